"""tomodrgn backproject: the map of simulated particles matches the ground truth, and breaks when poses, origins or
contrast are wrong (so the check a user runs first on real data can tell)."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
from _independent_sim import make_dataset

from tomodrgn import api
from tomodrgn.analysis.metrics import cc, fsc
from tomodrgn.cli import main
from tomodrgn.io.mrc import read_mrc
from tomodrgn.physics.pose import random_rotations, tilt_about_y
from tomodrgn.reconstruct.backproject import fold_nyquist, insert_slices, zero_accumulators
from tomodrgn.reconstruct.report import density_contrast, density_sign
from tomodrgn.simulate import simulate_dataset

D = 32


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Noiseless homogeneous particles with the simulator's default 1.5 px rms origins."""
    return simulate_dataset(tmp_path_factory.mktemp("sim"), "homogeneous", n_particles=60, box_size=D, n_tilts=21,
                            snr=None, seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def truth(sim):
    return read_mrc(sim.volume_paths[0])[0]


@pytest.fixture(scope="module")
def result(sim, tmp_path_factory):
    return api.backproject(sim.star_path, tmp_path_factory.mktemp("bp") / "out", device="cpu")


def _mid_fsc(vol, truth, apix):
    """Mean FSC with the truth over shells 4 … D/2 − 2 (beyond the overall shape, below the corner shells)."""
    return float(fsc(vol, truth, apix)[1][4 : D // 2 - 1].mean())


def test_map_matches_the_ground_truth(sim, truth, result):
    vol, apix = read_mrc(result.map_path)
    assert vol.shape == (D, D, D)
    assert apix == pytest.approx(sim.pixel_size, rel=1e-5)
    assert cc(vol, truth) > 0.85
    assert _mid_fsc(vol, truth, sim.pixel_size) > 0.9
    mirror = np.roll(np.flip(truth, 2), 1, axis=2)  # x → −x about voxel D/2: the other hand
    assert cc(vol, mirror) < cc(vol, truth) - 0.2 and _mid_fsc(vol, mirror, sim.pixel_size) < 0.3
    for half in result.half_map_paths:
        assert cc(read_mrc(half)[0], truth) > 0.8
    assert (result.n_particles, result.n_images) == (60, 60 * 21)
    assert result.density_sign == "positive" and result.density_contrast > 1.5 and result.suggestion is None


def test_fsc_table_and_pngs_are_written(result):
    table = np.loadtxt(result.fsc_path)
    assert table.shape == (D // 2 + 1, 4)
    np.testing.assert_allclose(table[:, 3], result.fsc, atol=1e-4)
    assert table[1:8, 3].min() > 0.9  # noiseless halves agree at low resolution
    assert np.isfinite(result.resolution_0143) and result.resolution_0143 >= 2 * result.pixel_size - 1e-6
    for png in (result.fsc_plot_path, result.slices_path):
        img = matplotlib.image.imread(png)[..., :3]
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.05, f"{png} looks blank"
        assert (img.mean(-1) < 0.5).mean() > 0.01, f"{png} has almost no dark pixels"
    filt, apix = read_mrc(result.filtered_map_path)
    assert filt.shape == (D, D, D) and apix == pytest.approx(result.pixel_size, rel=1e-5)


def test_random_poses_collapse_the_fsc(sim, truth, result, tmp_path):
    series = api.read_particles(sim.star_path)
    rng = np.random.default_rng(1)
    particle_rot = random_rotations(series.n_particles, rng)
    for p, rows in enumerate(series.image_indices):
        series.rotation[rows] = tilt_about_y(series.tilt[rows]) @ particle_rot[p]
    bad = api.backproject(series, tmp_path / "random", device="cpu")
    good_fsc = _mid_fsc(read_mrc(result.map_path)[0], truth, sim.pixel_size)
    bad_fsc = _mid_fsc(read_mrc(bad.map_path)[0], truth, sim.pixel_size)
    assert good_fsc > 0.9 and bad_fsc < 0.3, (good_fsc, bad_fsc)


def test_origin_sign_matters(tmp_path):
    shifted = simulate_dataset(tmp_path / "sim", "homogeneous", n_particles=40, box_size=D, n_tilts=21, snr=None,
                               shift_std=4 * 419.2 / D, seed=3)  # fmt: skip
    truth = read_mrc(shifted.volume_paths[0])[0]
    series = api.read_particles(shifted.star_path)
    right = read_mrc(api.backproject(series, tmp_path / "right", device="cpu").map_path)[0]
    series.shift = -series.shift
    negated = read_mrc(api.backproject(series, tmp_path / "negated", device="cpu").map_path)[0]
    series.shift = np.zeros_like(series.shift)
    ignored = read_mrc(api.backproject(series, tmp_path / "ignored", device="cpu").map_path)[0]
    cc_right, cc_neg, cc_none = cc(right, truth), cc(negated, truth), cc(ignored, truth)
    assert cc_right > 0.85 and cc_right > cc_neg + 0.1 and cc_right > cc_none + 0.05, (cc_right, cc_neg, cc_none)


def test_independent_forward_model(tmp_path):
    """Data made without tomodrgn (analytic projections, scipy Euler angles and Fourier shift, torch-ctf with a phase
    plate, ±4 px origins): the map reproduces the true map and its hand; with the origins negated it does not."""
    star, vol, _ = make_dataset(tmp_path / "independent", n_particles=24)
    series = api.read_particles(star)
    right = read_mrc(api.backproject(series, tmp_path / "right", device="cpu").map_path)[0]
    series.shift = -series.shift
    flipped = read_mrc(api.backproject(series, tmp_path / "flipped", device="cpu").map_path)[0]
    mirror = np.roll(np.flip(vol, 2), 1, axis=2)
    assert cc(right, vol) > 0.95 and cc(right, mirror) < 0.7
    assert _mid_fsc(right, vol, 13.1) > 0.9 and _mid_fsc(flipped, vol, 13.1) < 0.3
    assert cc(flipped, vol) < cc(right, vol) - 0.2


def test_invert_flips_the_density_and_says_so(sim, truth, tmp_path):
    res = api.backproject(sim.star_path, tmp_path / "inv", invert=True, first=20, device="cpu")
    assert cc(read_mrc(res.map_path)[0], truth) < -0.8
    assert res.density_sign == "negative" and "without --invert" in res.suggestion
    assert res.n_particles == 20


def test_wiener_with_dose_and_tilt_weights(sim, truth, tmp_path):
    res = api.backproject(sim.star_path, tmp_path / "w", ctf="wiener", dose_weight=True, tilt_weight=True,
                          insertion="nearest", device="cpu")  # fmt: skip
    assert cc(read_mrc(res.map_path)[0], truth) > 0.9
    assert res.density_sign == "positive"


def test_insertion_weights_and_nyquist_fold():
    num, w = zero_accumulators(4)
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.5, -1.25, 1.0], [2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]], dtype=torch.float64)
    insert_slices(num, w, pos, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.ones(4))
    assert w.sum().item() == pytest.approx(4.0)  # trilinear weights of each point sum to 1
    assert num[2, 2, 2].item() == pytest.approx(1.0) and w[2, 2, 2].item() == pytest.approx(1.0)
    assert num[3, 0:2, 2:4].sum().item() == pytest.approx(2.0)  # (x, y, z) = (0.5, −1.25, 1) → [z=3, y∈{0,1}, x∈{2,3}]
    chunked = zero_accumulators(4)
    insert_slices(*chunked, pos, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.ones(4), chunk=3)
    assert torch.equal(chunked[0], num) and torch.equal(chunked[1], w)
    folded = fold_nyquist(num)
    assert folded.shape == (4, 4, 4)
    assert folded[2, 2, 0].item() == pytest.approx(7.0)  # x = +2 (index 4) and x = −2 (index 0) are one sample


def test_density_sign_of_noise_is_unclear():
    rng = np.random.default_rng(0)
    values = [density_contrast(rng.normal(size=(D, D, D))) for _ in range(5)]
    assert all(density_sign(v) == "unclear" for v in values), values


def test_bad_selection_and_output_folder(sim, tmp_path):
    with pytest.raises(api.InputError, match="at least 2 particles"):
        api.backproject(sim.star_path, tmp_path / "a", first=1)
    ind = tmp_path / "ind.txt"
    ind.write_text("0\n1\n999\n")
    with pytest.raises(api.InputError, match="999 out of range"):
        api.backproject(sim.star_path, tmp_path / "b", indices=ind)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(api.InputError, match="--overwrite"):
        api.backproject(sim.star_path, tmp_path / "full", first=4)
    ind.write_text("# two particles\n3 5\n")
    res = api.backproject(sim.star_path, tmp_path / "full", indices=ind, overwrite=True, device="cpu")
    assert res.n_particles == 2 and res.map_path.is_file()


def test_cli_runs_and_rejects_bad_input(sim, tmp_path, capsys):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "tomodrgn.cli", "backproject", str(sim.star_path), "-o", str(out), "--first", "10"]
    ok = subprocess.run(cmd + ["--lowpass", "40"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "density: positive" in ok.stdout
    for name in ("backproject.mrc", "backproject_half1.mrc", "backproject_filt.mrc", "fsc.txt", "fsc.png",
                 "slices.png"):  # fmt: skip
        assert f"wrote {out / name}" in ok.stdout and (out / name).is_file()
    # bad input, through the same entry point in-process (a second interpreter start costs ~15 s on a loaded CI box)
    with pytest.raises(SystemExit) as exit_info:
        main(cmd[3:])  # the output folder is no longer empty
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--overwrite" in err and "Traceback" not in err, err
