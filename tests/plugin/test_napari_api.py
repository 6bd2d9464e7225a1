"""The plugin uses only napari's public, non-deprecated API, and keeps its own state in its own objects.

A static check of the plugin source (AST): no deprecated ``Viewer`` attribute (``viewer.scale_bar``,
``viewer.camera``, …: napari 0.9 moved them to ``viewer.canvas`` / ``viewer.scene``), no private (``_name``)
attribute read or set through a viewer (``viewer._x``, ``viewer.window._qt_viewer``, ``getattr(viewer, "_x")``),
no private napari module (``napari._qt``), and no attribute of the plugin's own set on napari's ``Viewer``.
Then, in a real viewer: the per-viewer state (:func:`napari_tomodrgn._view.viewer_state`) is shared by every
widget (napari hands each widget its own proxy of the viewer) and does not keep a closed viewer alive. napari's own
DeprecationWarning / FutureWarning are errors in these tests (``conftest.py``), so a deprecated call the AST check
misses still fails the behavioural tests.
"""

from __future__ import annotations

import ast
import gc
import warnings
import weakref
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "packages" / "napari-tomodrgn" / "src" / "napari_tomodrgn"
VIEWER_NAMES = {"viewer", "napari_viewer"}  # what the plugin calls a napari Viewer (a parameter or self.viewer)
# napari >= 0.9: deprecated ViewerModel attributes (DeprecationWarning) and their replacements
DEPRECATED_VIEWER_ATTRS = {
    "scale_bar": "viewer.canvas.overlays.scale_bar",
    "camera": "viewer.scene.camera",
    "axes": "viewer.scene.overlays.axes",
    "floating_axes": "viewer.canvas.overlays.axes",
    "text_overlay": "viewer.canvas.overlays.text",
    "grid": "viewer.canvas.grid",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _chain(node: ast.AST) -> list[str] | None:
    """``a.b.c`` → ["a", "b", "c"] (None when the chain does not start at a plain name)."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def _from_viewer(names: list[str] | None) -> list[str] | None:
    """The part of an attribute chain after the viewer (``self.viewer.window.x`` → ["window", "x"]), or None."""
    if names is None:
        return None
    for i, name in enumerate(names):
        if name in VIEWER_NAMES:
            return names[i + 1 :]
    return None


def napari_api_problems(source: str, filename: str = "<source>", viewer_attrs: set[str] | None = None) -> list[str]:
    """Lines of ``source`` that use deprecated or private napari API through a viewer, or set an attribute on the
    viewer that napari's Viewer does not have (``viewer_attrs``: its attribute names; None: not checked)."""
    problems = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute):
            if node.attr == "scale_bar" and not (
                isinstance(node.value, ast.Attribute) and node.value.attr == "overlays"
            ):
                problems.append(f"{where}: .scale_bar (use viewer.canvas.overlays.scale_bar)")
            after = _from_viewer(_chain(node))
            if after and len(after) == 1 and after[0] in DEPRECATED_VIEWER_ATTRS and after[0] != "scale_bar":
                problems.append(f"{where}: viewer.{after[0]} is deprecated (use {DEPRECATED_VIEWER_ATTRS[after[0]]})")
            if after and _is_private(after[-1]):
                problems.append(f"{where}: private napari attribute {'.'.join(['viewer', *after])}")
            if (
                viewer_attrs is not None
                and isinstance(node.ctx, ast.Store | ast.Del)
                and after is not None
                and len(after) == 1
                and after[0] not in viewer_attrs
            ):
                problems.append(f"{where}: sets {after[0]!r} on napari's Viewer (keep plugin state in the plugin)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in {"getattr", "setattr", "hasattr", "delattr"} and len(node.args) >= 2:
                after = _from_viewer(_chain(node.args[0]))
                name = node.args[1].value if isinstance(node.args[1], ast.Constant) else None
                if (
                    after is not None
                    and isinstance(name, str)
                    and (_is_private(name) or (not after and name in DEPRECATED_VIEWER_ATTRS))
                ):
                    problems.append(f"{where}: {node.func.id}(…, {name!r}) on a napari viewer")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "napari" and any(_is_private(p) for p in parts):
                    problems.append(f"{where}: private napari module {module}")
    return problems


def _viewer_attribute_names() -> set[str]:
    import napari

    return set(dir(napari.Viewer)) | set(napari.Viewer.model_fields)


@pytest.mark.parametrize(
    "bad",
    [
        "viewer.scale_bar.visible = True",
        "x = self.viewer.scale_bar",
        "viewer.camera.zoom = 2",
        "viewer._tomodrgn_units = True",
        "if not getattr(viewer, '_tomodrgn_units', False): pass",
        "s = dict(getattr(self.viewer, '_tomodrgn_iso', {}))",
        "canvas = getattr(getattr(viewer.window, '_qt_viewer', None), 'canvas', None)",
        "size = viewer.window._qt_viewer.canvas.size",
        "napari_viewer.tomodrgn_iso = {'sigma': 1.0}",
        "from napari._qt.qt_viewer import QtViewer",
        "import napari._app_model",
    ],
)
def test_the_check_finds_old_napari_api_uses(bad):
    assert napari_api_problems(bad, viewer_attrs=_viewer_attribute_names())


@pytest.mark.parametrize(
    "good",
    [
        "viewer.canvas.overlays.scale_bar.visible = True",
        "camera = viewer.scene.camera",
        "size = min(viewer.canvas.size)",
        "viewer.dims.ndisplay = 3",
        "viewer.title = 'x'",
        "real = getattr(viewer, '__wrapped__', viewer)",
        "self._progress_relays = []",
        "getattr(series, '_x', None)",
        "getattr(viewer.scene, 'camera')",
        "from napari.qt.threading import thread_worker",
        "from napari_tomodrgn._view import setup_viewer",
    ],
)
def test_the_check_passes_public_api(good):
    assert napari_api_problems(good, viewer_attrs=_viewer_attribute_names()) == []


def test_plugin_source_uses_only_public_non_deprecated_napari_api():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 5, SRC
    attrs = _viewer_attribute_names()
    problems = [p for f in files for p in napari_api_problems(f.read_text(), str(f.relative_to(SRC)), attrs)]
    assert problems == []


@pytest.mark.gui
def test_plugin_state_is_shared_by_widgets_and_not_on_the_viewer(make_napari_viewer):
    """Widgets opened from the Plugins menu get napari's proxy of the viewer (private access there warns): they set
    the viewer up and share one iso setting with the viewer itself, without a warning, and nothing is added to it."""
    from napari_tomodrgn._view import iso_setting, viewer_state

    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        # napari's proxy warns on a private attribute (also an error through conftest.py; here whatever the filters)
        warnings.filterwarnings("error", message="Private attribute access", category=FutureWarning)
        _, latent = viewer.window.add_plugin_dock_widget("napari-tomodrgn", "Latent browser")
        _, overlay = viewer.window.add_plugin_dock_widget("napari-tomodrgn", "Tomogram overlay")
        latent.set_iso_level(mass_kda=500.0)
    assert latent.viewer is not viewer  # a proxy, as napari hands it to plugin widgets
    assert iso_setting(viewer) == iso_setting(latent.viewer) == iso_setting(overlay.viewer) == {"mass_kda": 500.0}
    assert viewer_state(latent.viewer) is viewer_state(viewer) and viewer_state(viewer).units_set_up
    assert viewer.canvas.overlays.scale_bar.visible
    assert not [name for name in vars(viewer) if "tomodrgn" in name]


def test_plugin_state_does_not_keep_a_viewer_alive():
    from napari.components import ViewerModel

    from napari_tomodrgn._view import set_iso, setup_viewer, viewer_state

    model = ViewerModel()
    setup_viewer(model)
    set_iso(model, sigma=2.0)
    assert viewer_state(model).iso == {"sigma": 2.0}
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
