"""The hand of our maps from RELION 5 / WarpTools 2-D stack sets, against an independent forward model.

``_independent_sim.make_stack_set`` writes a WarpTools-shaped 2-D stack set (optimisation set, tomograms STAR with
``_rlnTomoProjX/Y/Z/W`` and ``_rlnTomoHand``) imaged as RELION 5 defines it (docs/architecture.md, "Hand"), with
scipy rotations and teamtomo's torch-ctf, not our pose or CTF code. Our maps must have the phantom's hand, for both
values of ``_rlnTomoHand``; the negative controls show the hand assertion fails on a mirrored map. The image-series
path has the same check in ``test_conventions.py::test_train_nn_recovers_independent_map_with_shifts`` and
``test_backproject.py::test_independent_forward_model`` (Warp 1 image series, RELION Euler angles from scipy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _cli_inprocess import run_cli
from _independent_sim import make_stack_set
from torch_fourier_rescale import fourier_rescale_3d

from tomodrgn import api
from tomodrgn.io.mrc import read_mrc, write_mrc
from tomodrgn.physics.hand import flip_hand
from tomodrgn.runs.config import TrainConfig

HAND_MARGIN = 0.3  # the criterion: CC with the truth > CC with its mirror + 0.3


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _hand_ccs(vol: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(CC with the truth, CC with its mirror image)."""
    return _cc(vol, truth), _cc(vol, flip_hand(truth))


@pytest.fixture(scope="module", params=[-1.0, 1.0], ids=["hand-1", "hand+1"])
def stack_set(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"stackset{request.param:+.0f}")
    opt, vol = make_stack_set(out, hand=request.param)
    return opt, vol


def test_flip_hand_is_z_mirror_about_the_box_centre():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(6, 6, 6)).astype(np.float32)
    out = flip_hand(vol)
    assert np.array_equal(flip_hand(out), vol)  # an involution
    assert np.array_equal(out[3], vol[3])  # voxel D/2 (the rotation origin) stays in place
    assert np.array_equal(out[1], vol[5]) and np.array_equal(out[0], vol[0])  # z → −z: index i → (D − i) mod D
    assert np.array_equal(flip_hand(torch.as_tensor(vol)).numpy(), out)  # torch and numpy agree
    stack = np.stack([vol, 2 * vol])  # (..., D, D, D): the last three axes are mirrored
    assert np.array_equal(flip_hand(stack)[1], 2 * out)


def test_backproject_has_the_hand_relion_defines(stack_set, tmp_path):
    opt, truth = stack_set
    res = api.backproject(opt, tmp_path / "bp", device="cpu")
    cc, cc_mirror = _hand_ccs(read_mrc(res.filtered_map_path)[0], truth)
    print(f"backproject: CC with truth {cc:.3f}, with its mirror {cc_mirror:.3f}")
    assert cc > 0.8 and cc > cc_mirror + HAND_MARGIN, (cc, cc_mirror)
    # negative control: the same set reconstructed in the other hand fails the criterion
    flipped = api.backproject(opt, tmp_path / "flipped", device="cpu", flip_hand=True)
    cc_f, cc_f_mirror = _hand_ccs(read_mrc(flipped.filtered_map_path)[0], truth)
    assert not cc_f > cc_f_mirror + HAND_MARGIN, (cc_f, cc_f_mirror)
    assert flipped.flip_hand and np.allclose(read_mrc(flipped.map_path)[0], flip_hand(read_mrc(res.map_path)[0]))


def test_train_nn_has_the_hand_relion_defines(stack_set, tmp_path):
    opt, truth = stack_set
    cfg = TrainConfig(
        mode="homogeneous", dec_arch="64x3", epochs=25, batch_size=8, lr=2e-3, device="cpu", backend="torch",
        preload=True,
    )  # fmt: skip
    api.train(opt, tmp_path / "run", cfg, progress=False)
    vol = api.load_model(tmp_path / "run").decode(None)[0]
    cc, cc_mirror = _hand_ccs(vol, truth)
    print(f"train_nn: CC with truth {cc:.3f}, with its mirror {cc_mirror:.3f}")
    assert cc > 0.7 and cc > cc_mirror + HAND_MARGIN, (cc, cc_mirror)
    mirrored = api.load_model(tmp_path / "run", flip_hand=True).decode(None)[0]  # negative control
    cc_f, cc_f_mirror = _hand_ccs(mirrored, truth)
    assert not cc_f > cc_f_mirror + HAND_MARGIN, (cc_f, cc_f_mirror)


def test_a_set_inverted_at_import_reconstructs_mirrored_and_the_check_names_the_flag(tmp_path, capsys):
    """The hand of a data set is set where its tilt angles get their sign (import), not in the particle files: the
    same images described after an import with the opposite sign (``inverted_at_import``, warpem/warp#74, the
    published tomoDRGN's "handedness of this toy dataset is inverted") reconstruct, in RELION's geometry and ours,
    as the mirror image of the specimen. ``--reference`` with the true map names "mirrored" and ``--flip-hand``."""
    opt, truth = make_stack_set(tmp_path / "set", hand=-1.0, n_particles=24, inverted_at_import=True)
    plain = _reference(truth, tmp_path / "truth.mrc", mirrored=False, inverted=False)
    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "bp", "--reference", plain)
    assert r.returncode == 0, r.stderr
    cc, cc_mirror = _hand_ccs(read_mrc(tmp_path / "bp" / "backproject_filt.mrc")[0], truth)
    print(f"inverted at import: CC with truth {cc:.3f}, with its mirror {cc_mirror:.3f}")
    assert cc_mirror > 0.8 and cc_mirror > cc + HAND_MARGIN, (cc, cc_mirror)
    assert "best match: mirrored; the flags that give it: --flip-hand" in r.stdout, r.stdout
    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "bp_flipped", "--flip-hand", "--reference", plain)
    assert "best match: as is; the flags that give it: --flip-hand" in r.stdout, r.stdout
    cc, cc_mirror = _hand_ccs(read_mrc(tmp_path / "bp_flipped" / "backproject_filt.mrc")[0], truth)
    assert cc > 0.8 and cc > cc_mirror + HAND_MARGIN, (cc, cc_mirror)


def _reference(truth: np.ndarray, path, mirrored: bool, inverted: bool, pixel_size: float = 8.0):
    """The true map (10 Å/px) as a user's map: optionally mirrored and inverted, at ``pixel_size`` Å (40 px box)."""
    vol = flip_hand(truth) if mirrored else truth
    vol = -vol if inverted else vol
    out, _ = fourier_rescale_3d(
        torch.as_tensor(vol, dtype=torch.float32), source_spacing=10.0, target_spacing=pixel_size
    )
    n = out.shape[0]
    pad = np.zeros((40, 40, 40), np.float32)
    o = 20 - n // 2
    pad[o : o + n, o : o + n, o : o + n] = out.numpy()  # voxel n/2 (the centre) lands on voxel 20
    write_mrc(path, pad, pixel_size=pixel_size)
    return path


@pytest.mark.parametrize("hand", [-1.0])
def test_reference_check_names_the_flags(hand, tmp_path, capsys):
    """``backproject --reference``: the truth given mirrored and inverted at another pixel size and box is named
    "mirrored + inverted" with the flags that give it; with those flags, or with the unmodified truth, "as is"."""
    opt, truth = make_stack_set(tmp_path / "set", hand=hand, n_particles=24)
    both = _reference(truth, tmp_path / "mirrored_inverted.mrc", mirrored=True, inverted=True)
    plain = _reference(truth, tmp_path / "truth.mrc", mirrored=False, inverted=False)

    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "a", "--reference", both)
    assert r.returncode == 0, r.stderr
    assert "best match: mirrored + inverted; the flags that give it: --invert --flip-hand" in r.stdout, r.stdout
    assert "(unclear" not in r.stdout
    report = (tmp_path / "a" / "reference_check.txt").read_text()
    ccs = {line.split(" CC ")[0].strip(): float(line.split(" CC ")[1].split()[0]) for line in report.splitlines()[1:5]}
    assert set(ccs) == {"as is", "mirrored", "inverted", "mirrored + inverted"}
    assert ccs["mirrored + inverted"] > 0.8 and ccs["mirrored + inverted"] > max(ccs["as is"], ccs["mirrored"]) + 0.3
    assert ccs["as is"] == pytest.approx(-ccs["inverted"], abs=1e-6)  # an inversion changes the sign of CC only

    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "b", "--reference", plain)
    assert "best match: as is; the flags that give it: no --invert, no --flip-hand" in r.stdout, r.stdout

    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "c", "--invert", "--flip-hand", "--reference", both)
    assert "best match: as is; the flags that give it: --invert --flip-hand" in r.stdout, r.stdout

    # the header's pixel size is used unless overridden: a wrong override loses the match
    r = run_cli(capsys, "backproject", opt, "-o", tmp_path / "d", "--reference", plain, "--reference-pixel-size", 5)
    assert "resampled to 10 Å/px" in r.stdout and "(5 Å/px" in r.stdout


def test_reference_check_errors_are_one_line(tmp_path, capsys):
    opt, _ = make_stack_set(tmp_path / "set", hand=-1.0, n_particles=4)
    write_mrc(tmp_path / "flat.mrc", np.zeros((4, 8, 8), np.float32), pixel_size=10.0)
    for ref, words in ((tmp_path / "missing.mrc", "missing.mrc"), (tmp_path / "flat.mrc", "expected a cubic map")):
        r = run_cli(capsys, "backproject", opt, "-o", tmp_path / ref.stem, "--reference", ref)
        assert r.returncode == 2 and r.stderr.strip() == r.stderr.strip().splitlines()[0], r.stderr  # before any work
        assert words in r.stderr and not (tmp_path / ref.stem).exists()
    r = run_cli(capsys, "train_nn", opt, "-o", tmp_path / "run", "--reference", tmp_path / "missing.mrc")
    assert r.returncode == 2 and "missing.mrc" in r.stderr and not (tmp_path / "run" / "weights.0.pt").exists()


def test_train_nn_reference_report_and_eval_vol_flip_hand(tmp_path, capsys):
    opt, truth = make_stack_set(tmp_path / "set", hand=1.0, n_particles=24)
    both = _reference(truth, tmp_path / "mirrored_inverted.mrc", mirrored=True, inverted=True)
    run = tmp_path / "run"
    r = run_cli(capsys, "train_nn", opt, "-o", run, "--dec-arch", "64x3", "--epochs", "20", "--batch-size", "8",
                "--lr", "2e-3", "--preload", "--reference", both)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "best match: mirrored + inverted; the flags that give it: --invert --flip-hand" in r.stdout, r.stdout
    assert "mirrored + inverted" in (run / "reference_check.txt").read_text()

    assert run_cli(capsys, "eval_vol", run, "-o", tmp_path / "v").returncode == 0
    r = run_cli(capsys, "eval_vol", run, "-o", tmp_path / "vf", "--flip-hand")
    assert r.returncode == 0, r.stderr
    vol, px = read_mrc(tmp_path / "v" / "vol_000.mrc")
    flipped, px_f = read_mrc(tmp_path / "vf" / "vol_000.mrc")
    assert px_f == px and np.array_equal(flipped, flip_hand(vol)) and not np.allclose(flipped, vol)
