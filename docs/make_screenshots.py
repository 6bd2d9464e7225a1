"""Screenshots of the napari plugin (full window, docks included, 1280×800) for the plugin README.

Run under a virtual X server from the repository root::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x1024x24" python docs/make_screenshots.py [outdir]

It opens the sample data (simulated tomogram + particles), trains a tiny VAE with the Train tab, browses its latent
space (in 2-D, then its volumes as iso-surfaces in 3-D), overlays the clusters on the tomogram, populates it in 3-D
with each particle's own volume, records movies and shows an input error; one PNG per state in ``docs/images/``
(names with ``3d`` for the 3-D views) and the path movie as ``latent_path_3d.gif``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images"


def wait(cond, timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while not cond():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("screenshot script: timed out waiting")
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.01)


def shot(viewer, name: str, keep_toasts: bool = False) -> None:
    from PIL import Image

    if not keep_toasts:
        close_toasts()
    wait(lambda: True)
    img = viewer.screenshot(canvas_only=False, flash=False)
    im = Image.fromarray(img).convert("RGB")
    path = OUT / f"{name}.png"
    im.save(path, optimize=True)
    if path.stat().st_size > 300_000:  # keep the repository small: 256 colours, no dithering
        im.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path}: {im.size[0]}x{im.size[1]}, {path.stat().st_size // 1024} KB")


def main() -> None:
    import napari
    from napari.utils.notifications import notification_manager

    from napari_tomodrgn._dock import TomoDRGNDock

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tomodrgn-shots-"))
    viewer = napari.Viewer(show=True)
    close_toasts()
    viewer.window._qt_window.resize(1280, 800)
    dock = TomoDRGNDock(viewer)
    viewer.window.add_dock_widget(dock, name="tomoDRGN", area="right")
    tempfile.tempdir = str(work)
    layers = viewer.open_sample("napari-tomodrgn", "simulated_tomogram")
    tomo = next(layer for layer in layers if type(layer).__name__ == "Image")
    viewer.dims.set_point(0, viewer.dims.range[0].stop / 2)
    viewer.reset_view()

    # 1. the Train tab, STAR pre-filled from the sample, training streamed: loss plot + volume beside the tomogram
    train = dock.train
    train.outdir.value = work / "run"
    train.zdim.value, train.enc_arch.value, train.dec_arch.value = 2, "32x2", "64x2"
    train.epochs.value, train.batch_size.value, train.device.value = 12, 4, "cpu"
    train.start()
    wait(lambda: train.worker is None)
    shot(viewer, "train")

    # 2. Latent tab: the run loaded, a click decodes a volume shown beside its particle
    dock.setCurrentIndex(1)
    latent = dock.latent
    latent.k.value = 4
    latent.run_dir.value = work / "run"
    latent.load()
    wait(lambda: not latent.workers)
    i = int(np.argmax(latent.coords[:, 0]))
    latent.show_particle(i)
    wait(lambda: not latent.workers)
    shot(viewer, "latent_click")

    # 3. Latent tab: a lasso selection, linked to the particles on the tomogram; coloured by PC1
    viewer.layers[train_volume_name()].visible = False
    lo, hi = latent.coords.min(0), latent.coords.max(0)
    mid = (lo + hi) / 2
    latent.select_in_polygon([lo - 1, [mid[0], lo[1] - 1], [mid[0], hi[1] + 1], [lo[0] - 1, hi[1] + 1]])
    viewer.layers.selection.active = latent._linked_points()[0]
    viewer.scene.camera.center = (viewer.dims.point[0], *np.mean(np.asarray(tomo.extent.world)[:, 1:], axis=0))
    viewer.scene.camera.zoom = 0.8 * min(viewer.window._qt_viewer.canvas.size) / float(np.ptp(tomo.extent.world[:, 2]))
    shot(viewer, "latent_selection")
    latent.color_by.value = "PC1"
    latent.decode_path("PC1", 5)
    wait(lambda: not latent.workers)
    shot(viewer, "latent_pc_path")

    # 3b. the same in 3-D: decoded volumes as iso-surfaces (view toggle, σ slider), the camera on them
    latent.view.value = "surface (3-D)"
    layer_docks(viewer, False)  # a wider canvas for the 3-D views
    camera = viewer.scene.camera
    tomo.visible = False  # in 3-D the tomogram is a projection over the view: the surfaces alone
    viewer.layers["tomoDRGN latent path volumes"].visible = False
    camera.set_view_direction((-0.8, 0.45, -0.4), (0.6, 0.8, 0.0))
    latent.show_particle(i)
    wait(lambda: not latent.workers)
    vol = viewer.layers["tomoDRGN particle volume"]
    camera.center = tuple(np.mean(np.asarray(vol.extent.world), axis=0))
    camera.zoom = 0.6 * min(viewer.window._qt_viewer.canvas.size) / float(np.ptp(vol.extent.world[:, 2]))
    shot(viewer, "latent_click_3d")
    vol.visible = False
    latent.decode_path("PC1", 5)
    wait(lambda: not latent.workers)
    row = viewer.layers["tomoDRGN latent path volumes"]
    row.visible = True
    camera.set_view_direction((-0.85, 0.5, -0.15), (0.5, 0.85, 0.0))
    camera.center = tuple(np.mean(np.asarray(row.extent.world), axis=0))
    camera.zoom = 0.95 * min(viewer.window._qt_viewer.canvas.size) / float(np.ptp(row.extent.world[:, 2]))
    shot(viewer, "latent_pc_path_3d")
    latent.save_path_movie(OUT / "latent_path_3d.gif")
    wait(lambda: not latent.workers)
    print(f"{OUT / 'latent_path_3d.gif'}: {(OUT / 'latent_path_3d.gif').stat().st_size // 1024} KB")
    latent.view.value = "slice (2-D)"
    layer_docks(viewer, True)
    tomo.visible = vol.visible = True

    # 4. Overlay tab: the particles coloured by k-means cluster of the run, one cluster hidden
    dock.setCurrentIndex(2)
    overlay = dock.overlay
    overlay.tomogram_layer.value = tomo.name
    overlay.star.value = Path(tomo.metadata["star_path"])
    overlay.run_dir.value = work / "run"
    overlay.k.value = 4
    overlay.show_particles()
    wait(lambda: not overlay.workers)
    overlay.clusters.value = list(overlay.clusters.choices)[1:]
    hide = (train_volume_name(), "tomoDRGN latent path volumes", "tomoDRGN particle volume")
    for name in (*hide, *(layer.name for layer in layers if type(layer).__name__ != "Image")):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    viewer.scene.camera.center = (viewer.dims.point[0], *np.mean(np.asarray(tomo.extent.world)[:, 1:], axis=0))
    shot(viewer, "overlay_clusters")

    # 4b. Populate (3-D): every shown particle's own volume at its pose, one Surface layer per cluster; a turn movie
    overlay.populate()
    wait(lambda: not overlay.workers)
    tomo.visible = False
    layer_docks(viewer, False)
    for layer in viewer.layers:  # the surfaces alone
        layer.visible = bool(layer.metadata.get("tomodrgn_populated"))
    camera.set_view_direction((-0.6, 0.75, 0.28), (0.8, 0.6, 0.0))
    camera.center = tuple(np.mean(np.asarray(tomo.extent.world), axis=0))
    camera.zoom = 1.1 * min(viewer.window._qt_viewer.canvas.size) / float(np.ptp(tomo.extent.world[:, 2]))
    shot(viewer, "overlay_populated_3d")
    overlay.movie_frames.value = 24
    overlay.record_turn(work / "turn.gif")
    wait(lambda: not overlay.recording)
    shot(viewer, "overlay_turn_3d")
    tomo.visible = True
    viewer.dims.ndisplay = 2
    layer_docks(viewer, True)

    # 5. An input error: the message is in the status line and a notification
    notification_manager.records.clear()
    dock.setCurrentIndex(1)
    latent.out_star.line_edit.value = ""
    latent.save_selection()
    shot(viewer, "error_message", keep_toasts=True)
    viewer.close()


def layer_docks(viewer, visible: bool) -> None:
    """Show or hide napari's layer list and layer controls (hidden: the canvas gets their width)."""
    qt_viewer = viewer.window._qt_viewer
    for dock in (qt_viewer.dockLayerList, qt_viewer.dockLayerControls):
        dock.setVisible(visible)
    wait(lambda: True)


def close_toasts() -> None:
    """Close napari's start-up notification pop-ups (e.g. the PyQt5 deprecation note): not part of the plugin."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for w in QApplication.topLevelWidgets() + [
        c for t in QApplication.topLevelWidgets() for c in t.findChildren(NapariQtNotification)
    ]:
        if isinstance(w, NapariQtNotification):
            w.close()


def train_volume_name() -> str:
    from napari_tomodrgn._widget_train import VOLUME_LAYER

    return VOLUME_LAYER


if __name__ == "__main__":
    main()
