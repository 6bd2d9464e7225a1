"""The plugin in 3-D (real napari viewer under Xvfb): decoded volumes as iso-surfaces with a live level, and the
populated tomogram as Surface layers per cluster."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import starfile
from conftest import tiny_config, write_mrc
from scipy.spatial.transform import Rotation
from test_surfaces import MARKERS, PS, phantom

from napari_tomodrgn._view import set_iso, show_volume
from napari_tomodrgn._widget_latent import PATH_LAYER, LatentWidget
from napari_tomodrgn._widget_latent import VOLUME_LAYER as LATENT_VOLUME
from napari_tomodrgn._widget_overlay import POPULATED, OverlayWidget
from tomodrgn.analysis.latent import pc_traversal as latent_pc_traversal
from tomodrgn.analysis.overlay import particle_overlay
from tomodrgn.analysis.surfaces import populated_surfaces
from tomodrgn.io.particles import read_particles

pytestmark = pytest.mark.gui
MAIN = threading.main_thread().ident


def wait_idle(qtbot, w, timeout=180_000):
    qtbot.waitUntil(lambda: not w.workers, timeout=timeout)
    qtbot.wait(10)


def populated_layers(viewer) -> list:
    return [layer for layer in viewer.layers if layer.metadata.get(POPULATED)]


def test_populate_draws_each_shown_cluster_as_a_surface_layer(make_napari_viewer, qtbot, sim_dataset, trained_run):
    truth = np.load(sim_dataset.truth_path)
    shape = tuple(int(s) for s in truth["tomogram_shape"])
    ps = sim_dataset.pixel_size
    viewer = make_napari_viewer()
    tomo = viewer.add_image(np.zeros(shape, np.float32), name="tomo00", scale=(ps, ps, ps), translate=(5.0, -3, 2))
    w = OverlayWidget(viewer)
    w.star.value = sim_dataset.star_path
    w.run_dir.value = trained_run
    w.k.value = 3
    w.show_particles(tomogram_layer="tomo00")
    wait_idle(qtbot, w)
    clusters = list(w.clusters.choices)
    shown = clusters[:2]
    w.clusters.value = shown  # the third cluster is hidden: it is not populated
    worker = w.populate()
    assert worker is not None
    wait_idle(qtbot, w)
    assert MAIN not in w.worker_threads
    assert viewer.dims.ndisplay == 3
    assert w.populate_progress.value == w.populate_progress.max == int(w.points_layer.shown.sum())
    layers = populated_layers(viewer)
    assert [layer.metadata["cluster"] for layer in layers] == shown
    ov, run = w.overlay, w.run
    keep = np.isin(ov.labels, shown)
    # the same meshes as the core gives for the run's own decoded volumes at the STAR poses
    expected = populated_surfaces(
        [run.volume(int(p)) for p in ov.particle_indices[keep]], ov.positions[keep], ov.rotations[keep],
        run.pixel_size, ov.pixel_size, labels=ov.labels[keep], particle_indices=ov.particle_indices[keep],
    )  # fmt: skip
    half = np.sqrt(3) * run.model.box_size / 2 * run.pixel_size / ov.pixel_size + 1  # box half-diagonal, voxels
    point_colors = {int(c): tuple(w.points_layer.face_color[i]) for i, c in enumerate(ov.labels)}
    for layer, exp in zip(layers, expected):
        verts, faces = layer.data[0], layer.data[1]
        np.testing.assert_allclose(verts, exp.mesh.vertices, atol=1e-4)
        np.testing.assert_array_equal(faces, exp.mesh.faces)
        np.testing.assert_allclose(layer.scale, tomo.scale)
        np.testing.assert_allclose(layer.translate, tomo.translate)
        # colour of the cluster's points (and of its vectors) on every vertex
        np.testing.assert_allclose(
            layer.vertex_colors, np.tile(point_colors[layer.metadata["cluster"]], (len(verts), 1))
        )
        # every particle's surface lies inside its own box around its STAR position
        for k, p in enumerate(exp.particle_indices):
            pos = ov.positions[np.flatnonzero(ov.particle_indices == p)[0]]
            dist = np.linalg.norm(verts[exp.vertex_particle == k] - pos, axis=1)
            assert len(dist) > 0 and dist.max() < half, (p, dist.max())
    # pressing it again replaces the layers instead of adding more
    w.populate()
    wait_idle(qtbot, w)
    assert len(populated_layers(viewer)) == len(shown)


def populate_with_phantoms(viewer, tiny_star, translate=(0.0, 0.0, 0.0)):
    """A tomogram layer "tomoA" and the tiny STAR's particles drawn by the Overlay widget as surfaces of the chiral
    phantom at their STAR poses (clusters 0, 1, 0, 1, 2); returns (tomogram layer, widget, surfaces, layers)."""
    tps = tiny_star.tomogram_pixel_size
    tomo = viewer.add_image(np.zeros((16, 48, 40), np.float32), name="tomoA", scale=(tps,) * 3, translate=translate)
    w = OverlayWidget(viewer)
    series = read_particles(tiny_star.star, tomogram_pixel_size=tps)
    ov = particle_overlay(series, labels=np.array([0, 1, 0, 1, 2]), tomogram_pixel_size=tps)
    surfaces = populated_surfaces(
        (phantom() for _ in ov.particle_indices), ov.positions, ov.rotations, PS, ov.pixel_size,
        labels=ov.labels, colors=ov.colors, particle_indices=ov.particle_indices, threshold=0.5,
    )  # fmt: skip
    return tomo, w, surfaces, w.show_surfaces(surfaces, tomo)


def test_populated_layers_put_markers_where_the_star_pose_says(make_napari_viewer, tiny_star):
    """World coordinates of the Surface layers (what the user sees, in Å): each marker of a chiral phantom lies where
    the STAR's Euler angles put it (scipy, not our pose code) relative to the particle's point."""
    viewer = make_napari_viewer(ndisplay=3)
    tomo, _, surfaces, layers = populate_with_phantoms(viewer, tiny_star, translate=(7.0, 0, -4))
    assert len(layers) == 3 and viewer.dims.ndisplay == 3
    for layer, surf in zip(layers, surfaces):
        np.testing.assert_allclose(layer.affine.affine_matrix, np.eye(4))  # world = data · scale + translate
        world = layer.data[0] * layer.scale + layer.translate  # Å, (z, y, x)
        for k, p in enumerate(surf.particle_indices):
            centre = np.asarray(tomo.data_to_world(tiny_star.coords_px[p][::-1]))  # the STAR coordinate, in Å
            d_xyz = (world[surf.vertex_particle == k] - centre)[:, ::-1]
            a = Rotation.from_euler("ZYZ", tiny_star.eulers[p], degrees=True).inv().as_matrix()
            r = np.linalg.norm(d_xyz, axis=1)
            for axis, (xyz, (r0, r1)) in MARKERS.items():
                marker = d_xyz[(r > r0) & (r < r1)]
                np.testing.assert_allclose(marker.mean(0), a @ xyz, atol=1.0, err_msg=f"particle {p} marker {axis}")


def _thousand_particle_star(folder: Path, pixel_size: float, box: int) -> Path:
    """A Warp-style STAR with 1,000 particles (one image each) spread through a 1024×1024×300 tomogram."""
    rng = np.random.default_rng(0)
    n = 1000
    write_mrc(folder / "stack.mrcs", rng.normal(size=(n, box, box)).astype(np.float32), pixel_size=pixel_size)
    eul = Rotation.random(n, random_state=1).as_euler("ZYZ", degrees=True)
    xyz = rng.uniform([20, 20, 20], [1004, 1004, 280], size=(n, 3))
    rows = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1}@stack.mrcs" for i in range(n)],
            "rlnGroupName": [f"tomo_{i:04d}" for i in range(n)],
            "rlnMicrographName": "tomo",
            "rlnAngleRot": eul[:, 0], "rlnAngleTilt": eul[:, 1], "rlnAnglePsi": eul[:, 2],
            "rlnOriginXAngst": 0.0, "rlnOriginYAngst": 0.0,
            "rlnDefocusU": 20000.0, "rlnDefocusV": 20000.0, "rlnDefocusAngle": 0.0,
            "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1,
            "rlnCtfBfactor": 0.0, "rlnCtfScalefactor": 1.0,
            "rlnCoordinateX": xyz[:, 0], "rlnCoordinateY": xyz[:, 1], "rlnCoordinateZ": xyz[:, 2],
            "rlnImagePixelSize": pixel_size,
        }
    )  # fmt: skip
    star = folder / "particles_1000.star"
    starfile.write({"particles": rows}, star, overwrite=True)
    return star


def test_populate_1000_particles_in_a_bin8_tomogram_within_memory(make_napari_viewer, qtbot, sim_dataset, tmp_path):
    """1,000 particles in a 1024×1024×300 tomogram (uint8, hidden): RSS grows by far less than a float32 tomogram
    (1.2 GB) and the process stays under 4 GiB; the UI thread is free while meshing (work in a worker)."""
    from tomodrgn.training.loop import iter_train

    run_dir = tmp_path / "homog"
    for _ in iter_train(sim_dataset.star_path, run_dir, tiny_config(mode="homogeneous", epochs=1)):
        pass
    star = _thousand_particle_star(tmp_path, sim_dataset.pixel_size, 16)
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((300, 1024, 1024), np.uint8), name="tomo", scale=(8.0,) * 3, visible=False)
    w = OverlayWidget(viewer)
    w.coord_pixel.value = 8.0
    w.star.value = star
    w.run_dir.value = run_dir
    w.show_particles(tomogram_layer="tomo")
    wait_idle(qtbot, w)
    assert len(w.points_layer.data) == 1000
    proc = psutil.Process()
    before = proc.memory_info().rss
    ticks = []
    w.populate()
    qtbot.waitUntil(lambda: ticks.append(w.populate_progress.value) or not w.workers, timeout=300_000)
    qtbot.wait(50)
    grown = proc.memory_info().rss - before
    layers = populated_layers(viewer)
    assert sum(len(layer.metadata["particle_indices"]) for layer in layers) == 1000
    assert w.populate_progress.value == 1000
    assert len({t for t in ticks if 0 < t < 1000}) > 0  # the bar moved while the worker ran (UI not frozen)
    assert grown < 300 * 2**20, grown / 2**20
    assert proc.memory_info().rss < 4 * 2**30
    assert viewer.dims.ndisplay == 3


def _lit_pixels(viewer) -> int:
    """Pixels of the rendered canvas brighter than the background."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    return int((shot[..., :3].max(-1) > 40).sum())


def test_latent_volumes_are_iso_surfaces_with_a_live_level(make_napari_viewer, qtbot, trained_run):
    from tomodrgn.api import DEFAULT_SIGMA, surface_threshold

    viewer = make_napari_viewer(show=True)  # a shown window: its canvas renders for the screenshots
    w = LatentWidget(viewer)
    w.load(trained_run)
    wait_idle(qtbot, w)
    w.view.value = "surface (3-D)"
    assert viewer.dims.ndisplay == 3
    w.show_particle(3)
    w.decode_path("PC1", 4)
    wait_idle(qtbot, w)
    vol, row = viewer.layers[LATENT_VOLUME], viewer.layers[PATH_LAYER]
    for layer in (vol, row):
        assert layer.rendering == "iso"
    # default level: mean + 2σ of the decoded volume; for the path row, of its 4 volumes (not of the gaps)
    assert w.iso_sigma.value == DEFAULT_SIGMA
    assert vol.iso_threshold == pytest.approx(surface_threshold(w.run.volume(3), sigma=DEFAULT_SIGMA))
    path_vols = w.run.decode(latent_pc_traversal(w.run.z, 1, 4)[0].astype(np.float32))
    assert row.iso_threshold == pytest.approx(surface_threshold(path_vols, sigma=DEFAULT_SIGMA), rel=1e-4)
    # the camera frames the last decoded volume (the path row)
    np.testing.assert_allclose(viewer.scene.camera.center, np.mean(row.extent.world, axis=0), atol=w.run.pixel_size)
    # the slider changes every decoded layer's level live, and the rendered surface with it
    viewer.layers.selection.active = vol
    lit = {}
    for k in (1.0, 4.0):
        w.iso_sigma.value = k
        assert vol.iso_threshold == pytest.approx(surface_threshold(w.run.volume(3), sigma=k))
        assert row.iso_threshold == pytest.approx(surface_threshold(path_vols, sigma=k), rel=1e-4)
        qtbot.wait(50)
        lit[k] = _lit_pixels(viewer)
    assert lit[1.0] > lit[4.0] > 0, lit
    # a mass: the level enclosing it in each volume; moving the slider goes back to σ
    w.mass.value = round(400 * w.run.pixel_size**3 * 1.23e-3)  # about 400 voxels of protein
    n_vox = w.mass.value * 1e3 * 1.23 / w.run.pixel_size**3
    level = surface_threshold(w.run.volume(3), w.run.pixel_size, mass_kda=w.mass.value)
    assert vol.iso_threshold == pytest.approx(level)
    assert abs(int((w.run.volume(3) > vol.iso_threshold).sum()) - n_vox) <= 2
    w.iso_sigma.value = 3.0
    assert w.mass.value == 0 and vol.iso_threshold == pytest.approx(surface_threshold(w.run.volume(3), sigma=3.0))
    # a newly decoded volume takes the current level
    w.show_particle(7)
    wait_idle(qtbot, w)
    assert vol.iso_threshold == pytest.approx(surface_threshold(w.run.volume(7), sigma=3.0))
    # the toggle to a slice view, and back (also following napari's own 2-D/3-D button)
    w.view.value = "slice (2-D)"
    assert viewer.dims.ndisplay == 2
    viewer.dims.ndisplay = 3
    assert w.view.value == "surface (3-D)"
    # a constant volume (an untrained decoder's) has no surface: shown without error, the others still follow
    show_volume(viewer, "flat", np.zeros((8, 8, 8), np.float32), 2.0, np.zeros(3))
    set_iso(viewer, sigma=2.0)
    assert vol.iso_threshold == pytest.approx(surface_threshold(w.run.volume(7), sigma=2.0))
