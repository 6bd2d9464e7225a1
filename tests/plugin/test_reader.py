"""napari reader: MRC volumes/stacks (pixel size → scale), STAR files (→ Points + Vectors), run folders."""

from __future__ import annotations

import numpy as np
import pytest

from napari_tomodrgn._reader import get_reader
from tomodrgn.io.mrc import write_mrc


def test_reader_mrc_volume_scale(tiny_volume):
    path, data, ps = tiny_volume
    reader = get_reader(str(path))
    assert callable(reader)
    [(arr, meta, kind)] = reader(str(path))
    assert kind == "image"
    np.testing.assert_array_equal(arr, data)
    assert meta["scale"] == (ps, ps, ps)
    assert meta["metadata"]["pixel_size"] == ps


def test_reader_mrcs_stack_scale(tmp_path):
    stack = np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4)
    path = write_mrc(tmp_path / "s.mrcs", stack, pixel_size=1.7)
    [(arr, meta, kind)] = get_reader(str(path))(str(path))
    assert kind == "image" and arr.shape == (3, 4, 4)
    # the image axis gets the pixel size too: next to a tomogram the z slider keeps voxel-sized steps, not 1 Å
    assert meta["scale"] == (pytest.approx(1.7),) * 3
    assert meta["metadata"]["stack"] and meta["axis_labels"] == ("image", "y", "x")


def test_reader_rejects_other_files(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "a.txt")) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert get_reader(str(empty)) is None


def test_reader_star_points_and_vectors(tiny_star):
    layers = get_reader(str(tiny_star.star))(str(tiny_star.star))
    kinds = [k for _, _, k in layers]
    assert kinds == ["points", "vectors"]
    (pts, pmeta, _), (vec, vmeta, _) = layers
    # positions in voxels of the stack pixel size (coordinates are read in stack pixels by default), scale = Å
    np.testing.assert_allclose(pts, tiny_star.coords_px[:, ::-1])
    assert pmeta["scale"] == (tiny_star.pixel_size,) * 3
    assert vec.shape == (len(pts), 2, 3)
    np.testing.assert_allclose(vec[:, 0], pts)
    np.testing.assert_allclose(np.linalg.norm(vec[:, 1], axis=1), np.linalg.norm(vec[0, 1]))
    assert list(pmeta["features"]["name"]) == [f"{t}_{i:03d}" for i, t in enumerate(tiny_star.tomograms)]


def test_reader_run_folder_in_viewer(make_napari_viewer, tmp_path, tiny_star):
    """A folder (run folder) opened through napari with this plugin gives its volumes (scaled) and particles."""
    run = tiny_star.star.parent
    analysis = run / "analyze.1"  # the folder the core's analyze writes
    analysis.mkdir()
    vol = np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32)
    write_mrc(analysis / "vol_000.mrc", vol, pixel_size=2.5)
    viewer = make_napari_viewer()
    viewer.open(str(run), plugin="napari-tomodrgn")
    names = [layer.name for layer in viewer.layers]
    assert "vol_000" in names and "particles" in names and "particles directions" in names
    assert not any("particles particles" in n for n in names)
    np.testing.assert_allclose(viewer.layers["vol_000"].scale, [2.5, 2.5, 2.5])
    points = viewer.layers["particles"]
    assert points.data.shape == (5, 3)
    # a plain STAR (no clusters): small, semi-transparent points that do not hide the tomogram
    assert points.opacity < 1 and np.all(points.size <= 8 * 2 / 4 + 2)
    assert len({tuple(c) for c in points.face_color}) == 1 and tuple(points.face_color[0][:3]) != (1.0, 1.0, 1.0)
    assert "stack" in names  # the stack next to the STAR is an image with the pixel size on every axis
    np.testing.assert_allclose(viewer.layers["stack"].scale, [2.0, 2.0, 2.0])
    # Å units, z/y/x axes, scale bar in Å
    assert viewer.canvas.overlays.scale_bar.visible
    assert str(points.units[0]) == "angstrom" and viewer.dims.axis_labels[-3:] in (("z", "y", "x"), ("image", "y", "x"))


def test_reader_training_run_folder(trained_run, sim_dataset):
    """A training run folder gives the volume at the mean z (model pixel size) and the training particles."""
    from tomodrgn.runs.trained import load_model

    layers = get_reader(str(trained_run))(str(trained_run))
    assert [k for _, _, k in layers] == ["image", "points", "vectors"]
    (vol, vmeta, _), (pts, pmeta, _), _ = layers
    model = load_model(trained_run)
    z = np.load(trained_run / "z.npy").mean(0, keepdims=True)
    np.testing.assert_allclose(vol, model.decode(z)[0], rtol=1e-5, atol=1e-6)
    assert vmeta["scale"] == (model.pixel_size,) * 3
    truth = np.load(sim_dataset.truth_path)
    np.testing.assert_allclose(pts, truth["position_px"][:, ::-1], atol=1e-4)
    assert len(set(pmeta["features"]["cluster"])) > 1


def test_open_run_by_its_checkpoint_is_unambiguous(make_napari_viewer, trained_run):
    """File ▸ Open on a run's weights.pt: only this plugin claims it (no reader dialog) and it opens the run."""
    from napari.plugins._npe2 import get_readers

    viewer = make_napari_viewer()  # (discovers the plugins)
    assert list(get_readers(str(trained_run / "weights.pt"))) == ["napari-tomodrgn"]
    layers = viewer.open(str(trained_run / "weights.pt"), plugin=None)  # as File ▸ Open: napari picks the reader
    kinds = sorted(type(layer).__name__ for layer in layers)
    assert kinds == ["Image", "Points", "Vectors"]
    assert get_reader(str(trained_run / "other.pt")) is None


def test_load_run_of_a_subset_run(sim_dataset, tmp_path):
    """A run trained on its first 8 of 12 particles (``--first 8``): the loader pairs z with those 8 particles."""
    from conftest import tiny_config

    from napari_tomodrgn._run import load_run
    from napari_tomodrgn._torch_setup import prepare_torch
    from tomodrgn.io.particles import read_particles

    prepare_torch()
    from tomodrgn.training.loop import iter_train

    run = tmp_path / "run"
    for _ in iter_train(sim_dataset.star_path, run, tiny_config(first=8, epochs=1)):
        pass
    loaded = load_run(run)
    assert loaded.z.shape == (8, 2) and loaded.series.n_particles == 8
    assert loaded.series.particle_names == read_particles(sim_dataset.star_path).particle_names[:8]
