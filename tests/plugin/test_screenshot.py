"""Rendered viewer (Xvfb + Mesa): the sample tomogram with the particle overlay and a volume is not blank."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
SAVE_TO = os.environ.get("TOMODRGN_SCREENSHOT")  # optional: write the screenshot there to look at it


def test_screenshot_sample_overlay_and_volume(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the sample dataset goes to a fresh temporary folder
    viewer = make_napari_viewer(show=True)
    layers = viewer.open_sample("napari-tomodrgn", "simulated_tomogram")
    kinds = sorted(type(layer).__name__ for layer in layers)
    assert kinds == ["Image", "Points", "Vectors"]
    tomo = next(layer for layer in layers if type(layer).__name__ == "Image")
    star = tomo.metadata["star_path"]
    # a ground-truth class volume next to the STAR file, opened through the plugin's reader
    assert Path(star).is_relative_to(tmp_path)
    [vol] = viewer.open(str(Path(star).parent / "volumes" / "class_00.mrc"), plugin="napari-tomodrgn")
    vol.translate = (0, 0, -vol.data.shape[-1] * vol.scale[-1] * 1.5)
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True)
    assert shot.ndim == 3 and shot.shape[-1] in (3, 4)
    rgb = shot[..., :3].reshape(-1, 3)
    assert rgb.std() > 0
    assert len(np.unique(rgb, axis=0)) > 1
    # the overlay is visible: hiding the Points + Vectors layers changes the picture
    for layer in layers:
        if type(layer).__name__ in ("Points", "Vectors"):
            layer.visible = False
    shot_without = viewer.screenshot(canvas_only=True)
    if SAVE_TO:
        from PIL import Image

        Image.fromarray(shot).save(SAVE_TO)
    assert np.abs(shot_without.astype(int) - shot.astype(int)).sum() > 0
