"""``tomodrgn export_poses`` (issue 33, item 2): a ``--refine-poses`` run's corrections written into its training STAR.

The expected poses are computed here independently of the exporter, from the corrections' definition
(:mod:`tomodrgn.models.pose_corrections`: A'ᵢ = Aᵢ·exp([ωₚ]×), s'ᵢ = sᵢ + (Aᵢ·eₚ)_xy + δᵢ) with scipy's rotation
vectors, and read back with :func:`read_particles`; the exported poses' worth is checked by back-projection against
the simulator's ground-truth map.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import starfile
from _cli_inprocess import assert_user_error, run_cli
from scipy.spatial.transform import Rotation

from tomodrgn import api
from tomodrgn.analysis.metrics import fsc
from tomodrgn.cli import main
from tomodrgn.io.mrc import read_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.simulate import simulate_dataset


def _train(star, run, *args: str) -> None:
    """``train_nn`` in this process (a module fixture has no capsys); fails on a non-zero exit."""
    try:
        main(["train_nn", str(star), "-o", str(run), "--batch-size", "8", "--device", "cpu", *args])
    except SystemExit as e:
        assert not e.code, e.code


def _set_poses(run, rng: np.random.Generator | None = None, **given: np.ndarray) -> dict[str, np.ndarray]:
    """Overwrite the run's last poses.E.npz with ``given`` corrections, others random (ω rms ≈ 5°, e ≈ 15 Å, δ ≈ 5
    Å; zero without ``rng``); returns the file's arrays."""
    path = max(run.glob("poses.*.npz"), key=lambda p: int(p.name.split(".")[1]))
    table = dict(np.load(path))
    for key, scale in (("rotation_rad", 0.05), ("origin_A", 15.0), ("tilt_shift_A", 5.0)):
        shape = table[key].shape
        table[key] = given.get(key, rng.normal(scale=scale, size=shape) if rng is not None else np.zeros(shape))
    np.savez(path, **table)
    return table


def _expected(star, table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A' (m, 3, 3) and s' (m, 2) Å of ``star``'s image rows ``rows`` (the run's images) from ``table``."""
    s = read_particles(star)
    a, p = s.rotation[rows], table["image_particle"]
    corrected = a @ Rotation.from_rotvec(table["rotation_rad"]).as_matrix()[p]
    moved = np.einsum("nij,nj->ni", a, table["origin_A"][p])[:, :2]
    return corrected, s.shift[rows] + moved + table["tilt_shift_A"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A simulated set with upstream pose errors (16 particles × 8 tilts, D 32), the same rows with ``_rlnOriginX/Y``
    in pixels, and a 1-epoch ``--refine-poses`` run on each (the first on ``--first 12`` particles only)."""
    root = tmp_path_factory.mktemp("export_poses")
    sim = simulate_dataset(root / "sim", preset="homogeneous", n_particles=16, box_size=32, n_tilts=8,
                           tilt_step=15.0, snr=2.0, pose_error_deg=7.5, pose_error_px=1.5, tilt_shift_error_px=0.5,
                           seed=1)  # fmt: skip
    blocks = starfile.read(sim.star_path, always_dict=True)
    px = float(blocks["optics"]["rlnImagePixelSize"].iloc[0])
    df = blocks["particles"]
    for a in "XY":
        df[f"rlnOrigin{a}"] = df.pop(f"rlnOrigin{a}Angst") / px
    px_star = sim.star_path.with_name("particles_px.star")
    starfile.write(blocks, px_star, float_format="%.6f")
    refine = ("--epochs", "1", "--refine-poses", "--refine-poses-after", "0")
    _train(sim.star_path, root / "run_first", *refine, "--first", "12")
    _train(px_star, root / "run_px", *refine)
    return sim, px_star, root / "run_first", root / "run_px"


def test_round_trip_angstrom_columns_and_rows_outside_the_selection(runs, tmp_path):
    sim, _, run, _ = runs
    table = _set_poses(run, np.random.default_rng(0))
    out = api.export_poses(run, tmp_path / "out" / "refined.star")
    series, back = read_particles(sim.star_path), read_particles(out)
    rows = np.sort(np.concatenate(series.image_indices[:12]))
    rotation, shift = _expected(sim.star_path, table, rows)
    np.testing.assert_allclose(back.rotation[rows], rotation, atol=1e-4)
    np.testing.assert_allclose(back.shift[rows], shift, atol=1e-4)
    assert np.abs(back.shift[rows] - series.shift[rows]).max() > 1.0  # the corrections did move them
    rest = np.setdiff1d(np.arange(series.n_images), rows)
    np.testing.assert_allclose(back.rotation[rest], series.rotation[rest], atol=1e-5)
    np.testing.assert_allclose(back.shift[rest], series.shift[rest], atol=1e-5)
    before, after = starfile.read(sim.star_path, always_dict=True), starfile.read(out, always_dict=True)
    assert list(after) == list(before) and list(after["particles"]) == list(before["particles"])
    pd_kept = [c for c in before["particles"] if not c.startswith(("rlnAngle", "rlnOrigin", "rlnImageName"))]
    assert after["particles"][pd_kept].equals(before["particles"][pd_kept])
    assert after["optics"].equals(before["optics"])
    assert np.array_equal(back.stack_path, series.stack_path) and np.array_equal(back.stack_index, series.stack_index)


def test_round_trip_pixel_columns(runs, tmp_path):
    _, px_star, _, run = runs
    table = _set_poses(run, np.random.default_rng(1))
    out = api.export_poses(run, tmp_path / "refined.star", epoch=0)
    back = read_particles(out)
    rotation, shift = _expected(px_star, table, np.arange(back.n_images))
    np.testing.assert_allclose(back.rotation, rotation, atol=1e-4)
    np.testing.assert_allclose(back.shift, shift, atol=1e-4)
    columns = list(starfile.read(out, always_dict=True)["particles"])
    assert "rlnOriginX" in columns and "rlnOriginXAngst" not in columns


def test_true_corrections_exported_sharpen_the_back_projection(runs, tmp_path):
    """Corrections set to the simulator's true errors (ω from the true pose of each particle's first image, e = 0,
    δ the rest of the true shift): the exported STAR back-projects closer to the truth map than the input's."""
    sim, px_star, _, run = runs
    truth = np.load(sim.star_path.parent / "truth.npz")
    s = read_particles(px_star)
    first = np.array([r[0] for r in s.image_indices])
    omega = Rotation.from_matrix(np.einsum("nji,njk->nik", s.rotation[first], truth["image_rotation"][first]))
    table = _set_poses(run, rotation_rad=omega.as_rotvec(), tilt_shift_A=truth["image_shift"] - s.shift)
    out = api.export_poses(run, tmp_path / "refined.star")
    back = read_particles(out)
    np.testing.assert_allclose(back.rotation, truth["image_rotation"], atol=1e-4)
    np.testing.assert_allclose(back.shift, truth["image_shift"], atol=1e-4)
    assert table["origin_A"].max() == 0
    gain = _fsc_gain(sim.star_path.parent, px_star, out, tmp_path)
    assert gain[1] > gain[0] + 0.05, gain


def _fsc_gain(sim_dir, star_in, star_out, tmp_path) -> tuple[float, float]:
    """Mean FSC (shells 1 … Nyquist) against the truth map of the back-projections of ``star_in`` and ``star_out``."""
    truth = read_mrc(sim_dir / "volumes" / "class_00.mrc")[0]
    means = []
    for name, star in (("in", star_in), ("out", star_out)):
        api.backproject(star, tmp_path / f"bp_{name}", device="cpu")
        vol = read_mrc(tmp_path / f"bp_{name}" / "backproject.mrc")[0]
        means.append(float(fsc(vol, truth)[1][1:].mean()))
    print(f"mean FSC against the truth: input {means[0]:.3f}, exported {means[1]:.3f}")
    return means[0], means[1]


def test_cli_errors(runs, tmp_path, capsys):
    sim, _, run, _ = runs
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, symlinks=True)
    for p in bare.glob("poses.*.npz"):
        p.unlink()
    assert_user_error(run_cli(capsys, "export_poses", bare, "-o", tmp_path / "a.star"), "train with --refine-poses")
    res = run_cli(capsys, "export_poses", run, "--epoch", "7", "-o", tmp_path / "a.star")
    assert_user_error(res, "--epoch 7", "poses.7.npz")
    (tmp_path / "b.star").write_text("x")
    assert_user_error(run_cli(capsys, "export_poses", run, "-o", tmp_path / "b.star"), "--overwrite")
    res = run_cli(capsys, "export_poses", run, "-o", sim.star_path, "--overwrite")
    assert_user_error(res, "would replace the input")
    assert not (tmp_path / "a.star").exists() and (tmp_path / "b.star").read_text() == "x"
    res = run_cli(capsys, "export_poses", run, "-o", tmp_path / "b.star", "--overwrite")
    assert res.returncode == 0 and "wrote" in res.stdout, res.stderr


@pytest.mark.slow
def test_refined_run_exports_better_poses(tmp_path, capsys):
    """A real refinement (``train_nn --refine-poses``, 30 epochs on 72 particles with 7.5° / 1.5 px / 0.5 px
    upstream errors): its exported poses back-project closer to the truth than the input poses."""
    sim = simulate_dataset(tmp_path / "sim", preset="homogeneous", n_particles=72, box_size=32, n_tilts=8,
                           tilt_step=15.0, snr=0.5, pose_error_deg=7.5, pose_error_px=1.5, tilt_shift_error_px=0.5,
                           seed=1)  # fmt: skip
    run = tmp_path / "run"
    res = run_cli(capsys, "train_nn", sim.star_path, "-o", run, "--epochs", "30", "--batch-size", "8",
                  "--refine-poses", "--device", "cpu")  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = run_cli(capsys, "export_poses", run, "-o", tmp_path / "refined.star")
    assert res.returncode == 0, res.stderr
    gain = _fsc_gain(sim.star_path.parent, sim.star_path, tmp_path / "refined.star", tmp_path)
    assert gain[1] > gain[0] + 0.1, gain


def test_relion5_stack_set_gets_particle_rotations_and_origins(tmp_path):
    """A RELION 5 / WarpTools 2-D stack set: A' exactly, s' without δ (no column holds it; one warning says so)."""
    sim = simulate_dataset(tmp_path / "sim", preset="homogeneous", n_particles=8, box_size=16, n_tilts=5, snr=None,
                           format="relion5", seed=5, n_tomograms=2)  # fmt: skip
    run = tmp_path / "run"
    _train(sim.star_path, run, "--epochs", "1", "--refine-poses", "--refine-poses-after", "0", "--first", "6")
    table = _set_poses(run, np.random.default_rng(2))
    with pytest.warns(UserWarning, match="per-image shifts"):
        out = api.export_poses(run, tmp_path / "out" / "optimisation_set.star")
    series, back = read_particles(sim.star_path), read_particles(out)
    rows = np.sort(np.concatenate(series.image_indices[:6]))
    rotation, shift = _expected(sim.star_path, table, rows)
    np.testing.assert_allclose(back.rotation[rows], rotation, atol=1e-4)
    np.testing.assert_allclose(back.shift[rows], shift - table["tilt_shift_A"], atol=1e-4)
    rest = np.setdiff1d(np.arange(series.n_images), rows)
    np.testing.assert_allclose(back.rotation[rest], series.rotation[rest], atol=1e-5)
    np.testing.assert_allclose(back.shift[rest], series.shift[rest], atol=1e-5)
