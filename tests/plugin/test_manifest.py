"""The npe2 manifest: valid, registered through the napari.manifest entry point, commands importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import npe2


def test_manifest_from_distribution_validates():
    manifest = npe2.PluginManifest.from_distribution("napari-tomodrgn")
    assert manifest.name == "napari-tomodrgn"
    manifest.validate_imports()  # every python_name resolves to an importable callable
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert widgets == {
        "tomoDRGN": "napari-tomodrgn.dock_widget",
        "Train": "napari-tomodrgn.train_widget",
        "Latent browser": "napari-tomodrgn.latent_widget",
        "Tomogram overlay": "napari-tomodrgn.overlay_widget",
    }
    [reader] = manifest.contributions.readers
    assert reader.accepts_directories and {"*.mrc", "*.mrcs", "*.star"} <= set(reader.filename_patterns)
    assert [s.key for s in manifest.contributions.sample_data] == ["simulated_tomogram"]


def test_npe2_validate_cli():
    npe2_cli = Path(sys.executable).with_name("npe2")
    out = subprocess.run([str(npe2_cli), "validate", "napari-tomodrgn"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_widgets_in_plugins_menu(make_napari_viewer):
    """The tabbed dock and the three widgets are in the Plugins menu (app-model submenu) and open as dock widgets."""
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    menus = dict(get_app_model().menus)
    plugin_menu = menus["napari/plugins/napari-tomodrgn"]
    titles = {item.command.title for item in plugin_menu}
    assert titles == {"tomoDRGN", "Train", "Latent browser", "Tomogram overlay"}
    assert any(getattr(item, "submenu", None) == "napari/plugins/napari-tomodrgn" for item in menus["napari/plugins"])
    for display in sorted(titles):
        dock, widget = viewer.window.add_plugin_dock_widget("napari-tomodrgn", display)
        assert dock is not None and type(widget).__module__.startswith("napari_tomodrgn")
