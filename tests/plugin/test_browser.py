"""Latent browser extras, error messages and the tabbed dock in a real napari viewer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_widgets import _click, wait_idle

from napari_tomodrgn._dock import TomoDRGNDock
from napari_tomodrgn._view import visible_in_view
from napari_tomodrgn._widget_latent import PATH_LAYER, LatentWidget
from napari_tomodrgn._widget_overlay import OverlayWidget

pytestmark = pytest.mark.gui
MAIN = threading.main_thread().ident


def last_notification() -> str:
    from napari.utils.notifications import notification_manager

    return str(notification_manager.records[-1].message) if notification_manager.records else ""


@pytest.fixture
def browser(make_napari_viewer, qtbot, trained_run, sim_dataset):
    """A viewer with the sample-like overlay (Points of the training STAR) and a latent browser with the run loaded."""
    viewer = make_napari_viewer()
    truth = np.load(sim_dataset.truth_path)
    shape = tuple(int(s) for s in truth["tomogram_shape"])
    ps = sim_dataset.pixel_size
    viewer.add_image(np.zeros(shape, np.float32), name="tomo00", scale=(ps, ps, ps))
    ov = OverlayWidget(viewer)
    ov.star.value = sim_dataset.star_path
    ov.show_particles(tomogram_layer="tomo00")
    wait_idle(qtbot, ov)
    w = LatentWidget(viewer)
    w.load(trained_run)
    wait_idle(qtbot, w)
    return viewer, w, ov


def test_latent_selection_linked_with_overlay_points(browser, qtbot):
    viewer, w, ov = browser
    pts = ov.points_layer
    lo, hi = w.coords.min(0), w.coords.max(0)
    mid = (lo + hi) / 2
    w.select_in_polygon([lo - 1, [mid[0], lo[1] - 1], [mid[0], hi[1] + 1], [lo[0] - 1, hi[1] + 1]])
    chosen = np.flatnonzero(w.coords[:, 0] <= mid[0])
    assert 0 < len(chosen) < 12
    # scatter → tomogram overlay: the same particles are selected among the points
    assert sorted(pts.features["particle"][sorted(pts.selected_data)]) == list(chosen)
    # tomogram overlay → scatter
    pts.selected_data = {0, 1}
    np.testing.assert_array_equal(w.selected, sorted(pts.features["particle"][[0, 1]]))
    np.testing.assert_allclose(w._highlight.get_offsets(), w.coords[w.selected])


def test_latent_umap_runs_in_a_worker_with_busy_bar(browser, qtbot):
    """Switching to UMAP (tens of seconds on first use: numba compiles) returns at once; a busy bar shows meanwhile."""
    import time

    _, w, _ = browser
    n_threads = len(w.worker_threads)
    t0 = time.perf_counter()
    w.method.value = "umap"
    returned_after = time.perf_counter() - t0
    assert w.workers and not w.busy.native.isHidden() and "umap" in w.status.value
    assert returned_after < 10.0, returned_after  # generous: the UI thread only started the worker
    wait_idle(qtbot, w, timeout=300_000)
    assert w.busy.native.isHidden() and w.ax.get_xlabel() == "UMAP1"
    assert len(w.worker_threads) > n_threads and MAIN not in w.worker_threads


def test_latent_legend_colour_by_and_distinct_hues(browser):
    _, w, _ = browser
    legend = w.ax.get_legend()
    n = len(np.unique(w.cluster_labels))
    assert legend is not None and len(legend.get_texts()) == n
    colours = {tuple(np.round(c, 3)) for c in w._scatter.get_facecolors()}
    assert len(colours) == n
    for quantity in ("PC1", "defocus"):
        w.color_by.value = quantity
        assert w._cbar is not None and w._cbar.ax.get_ylabel() == quantity
    w.color_by.value = "tomogram"
    assert [t.get_text() for t in w.ax.get_legend().get_texts()] == ["tomo00"]
    assert w.toolbar is not None  # zoom / pan


def test_latent_volumes_along_pc_and_between_picks(browser, qtbot):
    viewer, w, _ = browser
    w.decode_path("PC1", 4)
    wait_idle(qtbot, w)
    layer = viewer.layers[PATH_LAYER]
    d = w.run.model.decode(w.run.z[:1]).shape[-1]
    assert layer.data.shape == (d, d, 4 * d + 3 * (d // 4)) and visible_in_view(viewer, layer)
    assert "between" in w.path.choices[-1]
    w.decode_path("between 2 picked", 3)
    assert "click two particles" in w.status.value
    _click(w.canvas, w.ax, w.coords[2])
    _click(w.canvas, w.ax, w.coords[7])
    wait_idle(qtbot, w)
    w.decode_path("between 2 picked", 3)
    wait_idle(qtbot, w)
    row = viewer.layers[PATH_LAYER].data
    first = w.run.model.decode(w.run.z[2:3])[0]
    np.testing.assert_allclose(row[:, :, :d], first, rtol=1e-4, atol=1e-5)


def test_latent_bad_inputs_show_messages(make_napari_viewer, qtbot, trained_run, tmp_path):
    viewer = make_napari_viewer()
    w = LatentWidget(viewer)
    assert w.load() is None  # empty run folder field
    assert "choose a run folder" in w.status.value and "choose a run folder" in last_notification()
    w.load(trained_run)
    wait_idle(qtbot, w)
    assert w.coords is not None
    # a folder that is not a run: error text, and the previous run's scatter is cleared
    w.load(tmp_path)
    wait_idle(qtbot, w)
    assert w.status.value.startswith("error: ") and len(w.status.value) > 10, w.status.value
    assert w.run is None and w.coords is None and not w.ax.collections
    # save selection with nothing selected / with an empty path / with a folder: messages, no stray file
    w.load(trained_run)
    wait_idle(qtbot, w)
    assert w.save_selection() is None and "nothing selected" in w.status.value
    w.select_in_polygon([[-1e9, -1e9], [1e9, -1e9], [1e9, 1e9], [-1e9, 1e9]])
    before = set(tmp_path.iterdir())
    assert w.save_selection() is None and "choose a selection STAR file" in w.status.value
    assert w.save_selection(tmp_path) is None and "is a folder" in w.status.value
    assert set(tmp_path.iterdir()) == before


def test_overlay_star_not_matching_run_shows_message(make_napari_viewer, qtbot, trained_run, tiny_star):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 48, 48), np.float32), name="tomo", scale=(8.0, 8.0, 8.0))
    w = OverlayWidget(viewer)
    w.star.value = tiny_star.star
    w.run_dir.value = trained_run
    w.show_particles(tomogram_layer="tomo")
    wait_idle(qtbot, w)
    assert w.status.value.startswith("error: ") and "particles" in w.status.value, w.status.value
    assert str(tiny_star.star) in last_notification()
    w.star.line_edit.value = ""
    w.series = None
    assert w.show_particles() is None and "choose a particles STAR file" in w.status.value


def test_tabbed_dock_fits_a_1280x800_window(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1280, 800)
    dock = TomoDRGNDock(viewer)
    viewer.window.add_dock_widget(dock, name="tomoDRGN", area="right")
    assert [dock.tabText(i) for i in range(dock.count())] == ["Train", "Latent", "Overlay"]
    assert dock.minimumSizeHint().height() < 700 and dock.minimumSizeHint().width() < 500
    assert viewer.canvas.overlays.scale_bar.visible
