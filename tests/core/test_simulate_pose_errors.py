"""The simulator's upstream pose errors (``--pose-error-deg``, ``--pose-error-px``, ``--tilt-shift-error-px``): the
images keep the true poses, the STARs (Warp/M rows and the RELION 5 set) carry perturbed ones of the requested size,
``truth.npz`` has both, and without the options nothing changes, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
from _cli_inprocess import run_cli_as_user
from scipy.spatial.transform import Rotation

from tomodrgn import api
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc
from tomodrgn.physics.pose import matrix_to_euler
from tomodrgn.simulate import simulate_dataset

X_DEG, Y_PX, Z_PX = 7.5, 1.0, 0.5  # rms rotation angle (°), rms 3-D origin and per-tilt shift errors (px per axis)
MAXWELL_MEDIAN = 1.5382 / np.sqrt(3.0)  # median angle / rms angle of a rotation vector N(0, σ² I₃)
POSE_COLUMNS = {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"}
ERRORS = {"pose_error_deg": X_DEG, "pose_error_px": Y_PX, "tilt_shift_error_px": Z_PX}


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles (°) between rotation matrices, by scipy (not our code)."""
    return np.degrees(Rotation.from_matrix((a @ np.swapaxes(b, -1, -2)).reshape(-1, 3, 3)).magnitude())


def _tilt(theta_deg: np.ndarray) -> np.ndarray:
    """The simulator's stage tilt (RELION's passive Ry(θ)) as the transpose of scipy's active rotation about y."""
    return np.swapaxes(Rotation.from_euler("y", np.asarray(theta_deg)[:, None], degrees=True).as_matrix(), -1, -2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same noiseless data set (300 particles, 9 tilts, both STAR flavours) with and without pose errors."""
    out = tmp_path_factory.mktemp("pose_errors")
    kw = dict(preset="homogeneous", n_particles=300, box_size=32, n_tilts=9, tilt_step=15.0, snr=None, seed=7,
              format="relion5", n_tomograms=3)  # fmt: skip
    clean = simulate_dataset(out / "clean", **kw)
    with pytest.warns(UserWarning, match="per-image shift"):  # Z > 0 with a RELION 5 set: Warp rows only
        noisy = simulate_dataset(out / "errors", **kw, **ERRORS)
    return clean, noisy


def test_star_poses_carry_the_requested_errors(pair):
    _, sim = pair
    truth, apix = np.load(sim.truth_path), sim.pixel_size
    warp, rel = api.read_particles(sim.warp_star_path), api.read_particles(sim.star_path)
    p, n, t = truth["image_particle"], len(truth["rotation"]), len(truth["tilt_scheme"])
    # rotation: median error angle of the images ≈ 0.888·X, the same for every image of a particle
    err = _angle_deg(warp.rotation, truth["image_rotation"])
    assert np.median(err) == pytest.approx(MAXWELL_MEDIAN * X_DEG, rel=0.1), np.median(err)
    np.testing.assert_allclose(err, truth["rotation_error_deg"][p], atol=1e-3)
    # which side: A' = T_f · ΔR · A, the error in the particle's (subtomogram) frame; RELION 5 reads the same poses
    expected = _tilt(truth["image_tilt"]) @ truth["rotation_error"][p] @ truth["rotation"][p]
    np.testing.assert_allclose(warp.rotation, expected, atol=1e-5)
    np.testing.assert_allclose(warp.rotation, truth["image_star_rotation"], atol=1e-5)
    assert _angle_deg(rel.rotation, warp.rotation).max() < 1e-3
    # shifts: the Warp rows' residual = (T_f e)_xy + δ; e estimated per particle by least squares from all tilts
    resid = (warp.shift - truth["image_shift"]).reshape(n, t, 2)
    proj = _tilt(truth["tilt_scheme"])[:, :2].reshape(2 * t, 3)
    e_hat = resid.reshape(n, 2 * t) @ np.linalg.pinv(proj).T
    delta = resid - (e_hat @ proj.T).reshape(n, t, 2)
    noise = Z_PX * apix * np.sqrt(np.trace(np.linalg.inv(proj.T @ proj)) / 3)  # rms of e_hat − e from δ, per axis
    assert np.sqrt(np.mean(e_hat**2) - noise**2) == pytest.approx(Y_PX * apix, rel=0.1)
    assert np.sqrt(np.mean(delta**2) * 2 * t / (2 * t - 3)) == pytest.approx(Z_PX * apix, rel=0.1)
    assert np.sqrt(np.mean((e_hat - truth["origin_error_angstrom"]) ** 2)) == pytest.approx(noise, rel=0.15)
    np.testing.assert_allclose(warp.shift, truth["image_star_shift"], atol=1e-5)
    # the RELION 5 set: 3-D origins o + e (no per-tilt δ: that format has no per-image shift)
    e_rel = (rel.shift - truth["image_shift"]).reshape(n, t, 2)
    np.testing.assert_allclose(e_rel, (proj @ truth["origin_error_angstrom"].T).T.reshape(n, t, 2), atol=1e-4)
    assert np.sqrt(np.mean(truth["image_shift_error"] ** 2)) == pytest.approx(Z_PX * apix, rel=0.05)
    for key, value in ERRORS.items():
        assert float(truth[key]) == value


def test_without_errors_the_star_poses_are_the_truth(pair):
    sim, _ = pair
    truth = np.load(sim.truth_path)
    for series in (api.read_particles(sim.warp_star_path), api.read_particles(sim.star_path)):
        np.testing.assert_allclose(series.rotation, truth["image_rotation"], atol=1e-5)
        np.testing.assert_allclose(series.shift, truth["image_shift"], atol=1e-5)
    np.testing.assert_array_equal(truth["rotation_error"], np.broadcast_to(np.eye(3), truth["rotation"].shape))
    assert not truth["origin_error_angstrom"].any() and not truth["image_shift_error"].any()
    np.testing.assert_array_equal(truth["star_rotation"], truth["rotation"])
    np.testing.assert_array_equal(truth["image_star_shift"], truth["image_shift"])


def _mean_fsc(map_path: Path, reference: np.ndarray, apix: float) -> float:
    return float(api.fsc(read_mrc(map_path)[0], reference, apix)[1][1:].mean())


def _restored_star(sim, truth) -> Path:
    """The perturbed Warp rows with the recorded errors undone as documented (A = T_f ΔRᵀ T_fᵀ A', shift − (T_f e)_xy
    − δ), written as the simulator writes its STAR, next to the stacks."""
    read = api.read_particles(sim.warp_star_path)
    p, tilt = truth["image_particle"], _tilt(truth["image_tilt"])
    undo = tilt @ np.swapaxes(truth["rotation_error"][p], -1, -2) @ np.swapaxes(tilt, -1, -2)
    rotation = undo @ read.rotation
    shift = read.shift - (tilt @ truth["origin_error_angstrom"][p][..., None])[:, :2, 0] - truth["image_shift_error"]
    star = starfile.read(sim.warp_star_path, always_dict=True)
    rows = star["particles"]
    rows["rlnAngleRot"], rows["rlnAngleTilt"], rows["rlnAnglePsi"] = matrix_to_euler(rotation)
    rows["rlnOriginXAngst"], rows["rlnOriginYAngst"] = shift[:, 0], shift[:, 1]
    path = sim.warp_star_path.parent / "restored.star"
    starfile.write(star, path, overwrite=True, float_format="%.6f")
    return path


def test_backprojection_sees_the_errors_and_their_undoing(pair, tmp_path):
    """Back-projection, which knows nothing of the simulator, reads the errors as errors: the perturbed sets give a
    worse map (FSC with the simulator's ground-truth map), and undoing the recorded errors as documented gives back
    the clean map. (Real-space CC is no use here: the errors blur the noiseless map, and the blur raises its CC.)"""
    clean, sim = pair
    truth, apix = np.load(sim.truth_path), sim.pixel_size
    reference = read_mrc(clean.volume_paths[0])[0]
    restored = _restored_star(sim, truth)
    read = api.read_particles(restored)
    np.testing.assert_allclose(read.rotation, truth["image_rotation"], atol=1e-5)
    np.testing.assert_allclose(read.shift, truth["image_shift"], atol=1e-4)
    fsc = {}
    for name, star in (("clean", clean.warp_star_path), ("warp", sim.warp_star_path), ("relion5", sim.star_path),
                       ("restored", restored)):  # fmt: skip
        fsc[name] = _mean_fsc(api.backproject(star, tmp_path / name, device="cpu").map_path, reference, apix)
    print({k: round(v, 4) for k, v in fsc.items()})
    assert fsc["clean"] > 0.95
    assert fsc["warp"] < fsc["clean"] - 0.1 and fsc["relion5"] < fsc["clean"] - 0.1
    assert fsc["restored"] == pytest.approx(fsc["clean"], abs=2e-3)
    # the other side (A' = A · ΔR) would not undo them
    p = truth["image_particle"]
    wrong = api.read_particles(sim.warp_star_path).rotation @ np.swapaxes(truth["rotation_error"][p], -1, -2)
    assert np.median(_angle_deg(wrong, truth["image_rotation"])) > 1.0


def _star_rows(path: Path) -> list[str]:
    """A STAR file's lines without starfile's time-stamped first comment."""
    return [line for line in path.read_text().splitlines() if not line.startswith("# Created by")]


def _mrc_bytes(path: Path) -> bytes:
    """An MRC file's bytes with the header labels (224–1024, mrcfile's time stamp) blanked."""
    raw = bytearray(path.read_bytes())
    raw[224:1024] = bytes(800)
    return bytes(raw)


def _same_files(a: Path, b: Path, poses_may_differ: bool = False) -> None:
    """The same files in folders ``a`` and ``b``, byte for byte but for time stamps; ``poses_may_differ``: but for
    the STARs' pose columns and truth.npz's pose-error keys."""
    files = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
    for rel in files:
        if rel.suffix in (".mrc", ".mrcs"):
            assert _mrc_bytes(a / rel) == _mrc_bytes(b / rel), rel
        elif rel.suffix == ".star" and not poses_may_differ:
            assert _star_rows(a / rel) == _star_rows(b / rel), rel
        elif rel.suffix == ".star":
            other = starfile.read(b / rel, always_dict=True)
            for block, table in starfile.read(a / rel, always_dict=True).items():
                if hasattr(table, "columns"):
                    keep = [c for c in table.columns if c not in POSE_COLUMNS]
                    assert table[keep].equals(other[block][keep]), (rel, block)
        elif rel.suffix == ".npz":
            x, y = np.load(a / rel), np.load(b / rel)
            assert x.files == y.files
            for key in x.files:
                if not (poses_may_differ and ("error" in key or "star" in key)):
                    np.testing.assert_array_equal(x[key], y[key], err_msg=key)
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_default_output_unchanged_and_images_independent_of_errors(tmp_path):
    """Without the options the files are byte for byte those of explicit zeros (the stream of every earlier draw is
    untouched); with them, only the STARs' pose columns (and truth's error keys) change, not one image."""
    kw = dict(preset="4-class", n_particles=24, box_size=16, n_tilts=7, tilt_step=10.0, drop_tilts=2, seed=11,
              format="relion5", n_tomograms=2)  # fmt: skip
    simulate_dataset(tmp_path / "default", **kw)
    simulate_dataset(tmp_path / "zeros", **kw, pose_error_deg=0.0, pose_error_px=0, tilt_shift_error_px=0.0)
    _same_files(tmp_path / "default", tmp_path / "zeros")
    simulate_dataset(tmp_path / "errors", **kw, pose_error_deg=5.0, pose_error_px=2.0)
    _same_files(tmp_path / "default", tmp_path / "errors", poses_may_differ=True)
    assert _star_rows(tmp_path / "default/particles.star") != _star_rows(tmp_path / "errors/particles.star")


def test_bad_error_scales_are_named(tmp_path):
    for key, value in (("pose_error_deg", -1.0), ("pose_error_px", float("nan")), ("tilt_shift_error_px", "1")):
        with pytest.raises(InputError, match=key):
            simulate_dataset(tmp_path / key, n_particles=2, box_size=8, n_tilts=3, **{key: value})
        assert not (tmp_path / key).exists() or not any((tmp_path / key).iterdir())


def test_cli_flags_reach_the_api(tmp_path, capsys):
    out = tmp_path / "sim"
    res = run_cli_as_user(capsys, "simulate", "-o", out, "--preset", "homogeneous", "--n-particles", "12", "-D", "16",
                          "--n-tilts", "5", "--tilt-step", "15", "--pose-error-deg", "5", "--pose-error-px", "1.5",
                          "--tilt-shift-error-px", "0.5", "--format", "relion5")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("per-image shift") == 1, res.stderr
    truth = np.load(out / "truth.npz")
    assert (float(truth["pose_error_deg"]), float(truth["pose_error_px"]), float(truth["tilt_shift_error_px"])) == (
        5.0, 1.5, 0.5)  # fmt: skip
    read = api.read_particles(out / "particles.star")
    np.testing.assert_allclose(read.rotation, truth["image_star_rotation"], atol=1e-5)
    np.testing.assert_allclose(read.shift, truth["image_star_shift"], atol=1e-5)
    err = _angle_deg(read.rotation, truth["image_rotation"])
    np.testing.assert_allclose(err, truth["rotation_error_deg"][truth["image_particle"]], atol=1e-3)
    assert err.max() > 0.5 and truth["origin_error_angstrom"].std() > 0 and truth["image_shift_error"].std() > 0
