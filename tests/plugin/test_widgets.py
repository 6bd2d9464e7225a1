"""Dock widgets in a real napari viewer: training (thread worker), latent browser, tomogram overlay, tabbed dock."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import starfile
from conftest import tiny_config
from matplotlib.backend_bases import MouseEvent
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QMessageBox

from napari_tomodrgn._view import is_decoded, visible_in_view
from napari_tomodrgn._widget_latent import VOLUME_LAYER as LATENT_VOLUME
from napari_tomodrgn._widget_latent import LatentWidget
from napari_tomodrgn._widget_overlay import OverlayWidget
from napari_tomodrgn._widget_train import VOLUME_LAYER as TRAIN_VOLUME
from napari_tomodrgn._widget_train import TrainWidget
from tomodrgn.analysis.overlay import reference_z_axis
from tomodrgn.runs.trained import load_model

pytestmark = pytest.mark.gui
MAIN = threading.main_thread().ident


def wait_idle(qtbot, w, timeout=120_000):
    """Wait until every thread worker of widget ``w`` has finished."""
    qtbot.waitUntil(lambda: not w.workers, timeout=timeout)
    qtbot.wait(10)


def test_train_widget_streams_volume_off_main_thread(make_napari_viewer, qtbot, sim_dataset, tmp_path):
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.star.value = sim_dataset.star_path
    w.outdir.value = tmp_path / "run"
    worker = w.start(config=tiny_config(epochs=5))
    assert worker is not None and not w.start_btn.enabled and w.stop_btn.enabled
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.status.value.startswith("finished"), w.status.value
    # training ran in a worker thread, not in the Qt main thread (no timing thresholds: they flake on busy machines)
    assert w.worker_threads and MAIN not in w.worker_threads
    assert w.epochs_done == [0, 1, 2, 3, 4]
    assert len(w.losses) == w.progress.max and w.progress.value == w.progress.max
    assert np.all(np.isfinite(w.losses))
    [line] = w.ax.get_lines()  # the loss plot shows every step
    assert len(line.get_xdata()) == len(w.losses)
    layer = viewer.layers[TRAIN_VOLUME]
    assert layer.data.shape == (16, 16, 16) and layer.metadata["epoch"] == 4 and is_decoded(layer)
    np.testing.assert_allclose(layer.scale, [sim_dataset.pixel_size] * 3)
    assert visible_in_view(viewer, layer)  # the view moved to the streamed volume
    # the streamed volume is the last checkpoint decoded at the mean latent
    model = load_model(tmp_path / "run", 4)
    z = np.load(tmp_path / "run" / "z.4.npy").mean(0, keepdims=True)
    np.testing.assert_allclose(layer.data, model.decode(z)[0], rtol=1e-5, atol=1e-6)


def _answer(w, button):
    """Answer the next overwrite question of TrainWidget ``w`` with ``button`` (from inside its modal loop)."""

    def click():
        if w.confirm_box is None:
            QTimer.singleShot(20, click)
        else:
            w.confirm_box.button(button).click()

    QTimer.singleShot(20, click)


def test_train_widget_shows_warnings_in_its_status_line(make_napari_viewer, qtbot, sim_dataset, tmp_path):
    """A warning training raises (here: MRC headers that disagree with the STAR's pixel size) is one line in the
    status, without Python's module path, and the final status keeps it."""
    import shutil

    import mrcfile

    root = tmp_path / "set"
    shutil.copytree(sim_dataset.star_path.parent, root)
    for stack in root.rglob("*.mrcs"):
        with mrcfile.open(stack, mode="r+") as m:
            m.voxel_size = 2 * float(m.voxel_size.x)
    w = TrainWidget(make_napari_viewer())
    w.star.value = root / sim_dataset.star_path.name
    w.outdir.value = tmp_path / "run"
    assert w.start(config=tiny_config(epochs=1)) is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.status.value.startswith("finished"), w.status.value
    assert len(w.warnings) == 1 and w.warnings[0].startswith("warning: ") and "MRC header" in w.warnings[0]
    assert ".py:" not in w.warnings[0]
    assert "warning" in w.status.value, w.status.value


def test_train_widget_asks_before_overwriting(make_napari_viewer, qtbot, sim_dataset, tmp_path):
    w = TrainWidget(make_napari_viewer())
    w.star.value = sim_dataset.star_path
    out = tmp_path / "run"
    out.mkdir()
    (out / "weights.0.pt").write_bytes(b"old")
    w.outdir.value = out
    _answer(w, QMessageBox.No)
    assert w.start(config=tiny_config(epochs=1)) is None
    assert "not empty" in w.status.value and (out / "weights.0.pt").read_bytes() == b"old"
    _answer(w, QMessageBox.Yes)
    assert w.start(config=tiny_config(epochs=1)) is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert w.status.value.startswith("finished"), w.status.value


def test_train_widget_bad_input_messages(make_napari_viewer):
    from napari.utils.notifications import notification_manager

    w = TrainWidget(make_napari_viewer())
    n0 = len(notification_manager.records)
    assert w.start() is None  # empty STAR field (magicgui would read it as '.')
    assert "choose a particles STAR file" in w.status.value
    assert len(notification_manager.records) > n0 and str(notification_manager.records[-1].message)


def test_train_widget_prefills_star_from_sample(make_napari_viewer, sim_dataset):
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    assert str(w.star.line_edit.value) == ""
    viewer.add_image(np.zeros((4, 4, 4)), metadata={"star_path": str(sim_dataset.star_path)})
    assert w.star.value == sim_dataset.star_path


def test_train_widget_form_builds_config(make_napari_viewer):
    w = TrainWidget(make_napari_viewer())
    assert w.config().encoder == "reference-frame"
    w.encoder.value = "per-tilt"
    w.n_tilts.value = 5
    w.lr.value, w.beta.value, w.device.value = 1e-3, 0.5, "cpu"
    cfg = w.config()
    assert cfg.encoder == "per-tilt" and cfg.n_tilts == 5 and cfg.mode == "vae"
    assert cfg.lr == pytest.approx(1e-3) and cfg.beta == pytest.approx(0.5) and cfg.device == "cpu"
    w.mode.value = "homogeneous"
    assert not w.encoder.enabled and not w.zdim.enabled and not w.enc_arch.enabled
    assert w.config().mode == "homogeneous"


def test_train_widget_stop_button(make_napari_viewer, qtbot, sim_dataset, tmp_path):
    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    w.star.value = sim_dataset.star_path
    w.outdir.value = tmp_path / "run"
    worker = w.start(config=tiny_config(epochs=200))
    stepped = []

    def on_event(item):
        if item[0] == "step" and not stepped:
            stepped.append(item[1])
            w.stop_btn.native.click()

    worker.yielded.connect(on_event)
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
    assert stepped and w.stop_event.is_set()
    assert w.status.value.startswith("stopped"), w.status.value
    assert len(w.epochs_done) < 200
    assert list((tmp_path / "run").glob("weights.*.pt")), "no checkpoint written on stop"


def _click(canvas, ax, xy, name="button_press_event"):
    x, y = ax.transData.transform(xy)
    MouseEvent(name, canvas, x, y, button=1)._process()


def test_latent_click_decodes_volume_in_view(make_napari_viewer, qtbot, trained_run):
    viewer = make_napari_viewer()
    w = LatentWidget(viewer)
    assert w.load(trained_run) is not None
    assert not w.busy.native.isHidden()  # the busy bar shows until the worker has finished
    wait_idle(qtbot, w)
    assert w.busy.native.isHidden()
    run = w.run
    assert run is not None and w.coords.shape == (12, 2) and w.cluster_labels.shape == (12,)
    target = 5
    _click(w.canvas, w.ax, w.coords[target] + 1e-6)
    wait_idle(qtbot, w)
    assert w.worker_threads and MAIN not in w.worker_threads  # loading, embedding and decoding ran off the main thread
    layer = viewer.layers[LATENT_VOLUME]
    assert visible_in_view(viewer, layer), (viewer.dims.point, viewer.scene.camera.center, layer.extent.world)
    # beside the particle (its STAR position, Å), in the particle's z slice
    pos = run.series.position[w.current][::-1]
    centre = np.mean(layer.extent.world, axis=0)
    assert abs(centre[0] - pos[0]) <= run.pixel_size and np.linalg.norm(centre - pos) < 3 * 16 * run.pixel_size
    assert layer.metadata["particle"] == w.current
    i = w.current
    assert np.linalg.norm(w.coords[i] - w.coords[target]) < 1e-5
    expected = load_model(trained_run).decode(np.load(trained_run / "z.npy")[i : i + 1])[0]
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.scale, [run.pixel_size] * 3)
    # a second click on the same particle comes from the cache (same array object)
    _click(w.canvas, w.ax, w.coords[target])
    wait_idle(qtbot, w)
    assert viewer.layers[LATENT_VOLUME].data is run.volume(i)


def test_latent_rectangle_selection_saves_star(make_napari_viewer, qtbot, trained_run, tmp_path):
    viewer = make_napari_viewer()
    w = LatentWidget(viewer)
    w.load(trained_run)
    wait_idle(qtbot, w)
    w.tool.value = "rectangle"
    lo, hi = w.coords.min(0), w.coords.max(0)
    mid = (lo + hi) / 2
    corner0, corner1 = lo - 0.01 * (hi - lo), np.array([mid[0], hi[1] + 0.01 * (hi[1] - lo[1])])
    _click(w.canvas, w.ax, corner0)
    _click(w.canvas, w.ax, corner1, "motion_notify_event")
    _click(w.canvas, w.ax, corner1, "button_release_event")
    expected = np.flatnonzero(w.coords[:, 0] <= mid[0])
    np.testing.assert_array_equal(w.selected, expected)
    assert 0 < len(expected) < 12
    out = w.save_selection(tmp_path / "sel.star")
    df = starfile.read(out, always_dict=True)["particles"]
    names = list(dict.fromkeys(df["rlnGroupName"]))
    assert names == [w.run.series.particle_names[i] for i in expected]
    assert set(df.columns) == set(w.run.series.images.columns)


def test_overlay_widget_layers_and_volumes(make_napari_viewer, qtbot, sim_dataset, trained_run):
    truth = np.load(sim_dataset.truth_path)
    shape = tuple(int(s) for s in truth["tomogram_shape"])
    viewer = make_napari_viewer()
    ps = sim_dataset.pixel_size
    viewer.add_image(np.zeros(shape, np.float32), name="tomo00", scale=(ps, ps, ps))
    w = OverlayWidget(viewer)
    assert "tomo00" in w.tomogram_layer.choices
    w.star.value = sim_dataset.star_path
    w.run_dir.value = trained_run
    w.k.value = 3
    w.show_particles(tomogram_layer="tomo00")
    wait_idle(qtbot, w)
    points, vectors = w.points_layer, w.vectors_layer
    np.testing.assert_allclose(points.data, truth["position_px"][:, ::-1], atol=1e-4)
    np.testing.assert_allclose(points.scale, [ps] * 3)
    dirs = vectors.data[:, 1] / np.linalg.norm(vectors.data[:, 1], axis=1, keepdims=True)
    np.testing.assert_allclose(dirs, reference_z_axis(truth["rotation"]), atol=1e-4)
    assert len(np.unique(points.features["cluster"])) == 3
    assert len({tuple(c) for c in points.face_color}) == 3
    points.selected_data = {4}
    wait_idle(qtbot, w)
    vol_layer = viewer.layers["tomoDRGN particle volume"]
    assert vol_layer.metadata["particle"] == 4 and visible_in_view(viewer, vol_layer)
    # decoded volumes are not offered as tomograms
    assert w.tomogram_layer.choices == ("tomo00",)
    # per-cluster show/hide
    keep = w.clusters.choices[0]
    w.clusters.value = [keep]
    np.testing.assert_array_equal(points.shown, points.features["cluster"] == keep)
    assert len(vectors.data) == int((points.features["cluster"] == keep).sum())
    w.clusters.value = list(w.clusters.choices)
    assert points.shown.all() and len(vectors.data) == len(points.data)


def test_torch_setup_survives_mesa_opengl(tmp_path):
    """After napari loaded Mesa's OpenGL (and its LLVM), prepare_torch() keeps torch from importing triton, which
    would crash the process; an optimiser step (torch imports triton lazily there) then runs fine."""
    import subprocess
    import sys

    script = tmp_path / "s.py"
    script.write_text(
        "import importlib.util\n"
        "print('has_triton', importlib.util.find_spec('triton') is not None)\n"
        "import napari, torch\n"
        "v = napari.Viewer(show=False)\n"
        "from napari_tomodrgn._torch_setup import mesa_llvm_loaded, prepare_torch\n"
        "msg = prepare_torch()\n"
        "print('mesa', mesa_llvm_loaded(), 'msg', msg is not None)\n"
        "p = torch.nn.Parameter(torch.ones(3))\n"
        "opt = torch.optim.AdamW([p], lr=0.1)\n"
        "(p ** 2).sum().backward(); opt.step()\n"
        "print('step ok', float(p.sum()) < 3.0)\n"
        "v.close()\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "step ok True" in out.stdout
    blocked = "mesa True" in out.stdout and "has_triton True" in out.stdout
    assert ("msg True" in out.stdout) == blocked  # triton is blocked exactly when Mesa's LLVM is loaded
