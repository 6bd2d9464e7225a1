"""The plugin's 3-D view is not a mirror: markers at +x, +y and +z of a [z, y, x] array land on screen where a
right-handed camera puts them (x right, y up, z towards the viewer, as in ChimeraX), for several view directions.

The expected screen positions come from vector algebra alone (screen right = up × towards-viewer), not from napari's
or our camera code; the measured ones are the centroids of each marker's colour in a real rendered canvas (Xvfb).
napari's default orientation (y down) fails this test: it shows the enantiomer.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomodrgn._view import setup_viewer

pytestmark = pytest.mark.gui
N = 48
C = N // 2
MARKERS_XYZ = {"red": (14, 0, 0), "green": (0, 14, 0), "blue": (0, 0, 14)}  # voxels from the centre, (x, y, z)


def _ball(center_zyx, r=4.0) -> np.ndarray:
    zz, yy, xx = np.mgrid[:N, :N, :N]
    d2 = (zz - center_zyx[0]) ** 2 + (yy - center_zyx[1]) ** 2 + (xx - center_zyx[2]) ** 2
    return (d2 <= r * r).astype(np.float32)


def _expected_screen(marker_xyz, view_zyx, up_zyx) -> np.ndarray:
    """(right, up) screen offset of a marker for a right-handed camera looking along ``view`` with ``up`` up."""
    towards = -np.asarray(view_zyx, float)[::-1]
    towards /= np.linalg.norm(towards)
    up = np.asarray(up_zyx, float)[::-1]
    up = up - (up @ towards) * towards
    up /= np.linalg.norm(up)
    right = np.cross(up, towards)  # right × up = towards: a right-handed screen frame
    m = np.asarray(marker_xyz, float)
    return np.array([m @ right, m @ up])


def _measured_screen(shot: np.ndarray) -> dict[str, np.ndarray]:
    """(right, up) centroid offset from the canvas centre of each marker colour, in pixels."""
    rgb = shot[..., :3].astype(float)
    h, w = rgb.shape[:2]
    out = {}
    for k, colour in enumerate(("red", "green", "blue")):
        others = np.delete(rgb, k, axis=-1).max(-1)
        mask = (rgb[..., k] > 60) & (others < 0.5 * rgb[..., k])
        ys, xs = np.nonzero(mask)
        out[colour] = None if len(xs) < 10 else np.array([xs.mean() - (w - 1) / 2, (h - 1) / 2 - ys.mean()])
    return out


def test_3d_view_shows_maps_in_their_own_hand(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # a shown window: its canvas renders for the screenshots
    setup_viewer(viewer)
    for colour, (x, y, z) in MARKERS_XYZ.items():
        vol = _ball((C + z, C + y, C + x))
        viewer.add_image(vol, name=colour, colormap=colour, blending="additive", rendering="mip")
    viewer.dims.ndisplay = 3
    viewer.scene.camera.center = (C, C, C)
    viewer.scene.camera.zoom = 6.0
    views = [  # (view direction, up direction), world (z, y, x)
        ((-1, 0, 0), (0, 1, 0)),  # the default: down the z axis, y up
        ((-1, -1, -1), (0, 1, 0)),
        ((0, 0, -1), (0, 1, 0)),  # from +x
        ((-1, 1, 0.5), (1, 0, 0)),
        ((0.3, -1, 0.2), (0, 0, 1)),
    ]
    checked = 0
    for k, (view, up) in enumerate(views):
        if k:
            viewer.scene.camera.set_view_direction(view, up)
        shot = viewer.screenshot(canvas_only=True, flash=False)
        measured = _measured_screen(shot)
        for colour, marker in MARKERS_XYZ.items():
            expected = _expected_screen(marker, view, up)
            if np.linalg.norm(expected) < 5:  # along the view direction: no screen offset to check
                continue
            got = measured[colour]
            assert got is not None, (view, colour)
            cos = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
            assert cos > 0.95, (view, up, colour, got, expected)
            checked += 1
    assert checked >= 12
