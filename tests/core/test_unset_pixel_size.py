"""An MRC header of 1 Å/px (or 0) is unset: stacks and ``--reference`` maps whose header says so are not taken at
1 Å/px; the reference check says "unclear" instead of advising on noise, and phrases its advice relative to the
flags of the run; a ``_rlnImageSize`` other than the stacks' box is named.

Legacy headers are written as cryoDRGN, older Warp and the published tomoDRGN write them (``test_mrc_legacy``), the
data set is the noiseless CTF-free Warp 1 layout of ``test_no_ctf``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from _cli_inprocess import run_cli_as_user
from test_no_ctf import PX, write_no_ctf_set

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import read_particles
from tomodrgn.io.pixel_size import header_unset
from tomodrgn.physics.hand import flip_hand
from tomodrgn.reconstruct.reference_check import check_against_reference, load_reference

pytestmark = pytest.mark.filterwarnings("ignore::tomodrgn.io.mrc.LegacyMrcHeaderWarning")

STAR_PX = {"rlnDetectorPixelSize": PX, "rlnMagnification": 10000.0}  # Warp 1: detector pixel (µm) / magnification


def legacy_map(path: Path, vol: np.ndarray, pixel_size: float) -> Path:
    """A volume with the header older writers leave: no 'MAP ' id string, zero machine stamp (bytes 208–215)."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(vol, dtype=np.float32))
        m.voxel_size = pixel_size
    raw = bytearray(path.read_bytes())
    raw[208:216] = bytes(8)
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_no_ctf_set(tmp_path_factory.mktemp("px"))


@pytest.fixture
def cli_in(capsys):
    """The command in this process, its warning lines as a user sees them (:func:`run_cli_as_user`)."""
    return lambda *argv: run_cli_as_user(capsys, *argv)


def assert_one_error(res, *culprits: str) -> None:
    """Exit 2, no traceback, one error line naming every culprit (besides one-line warnings, e.g. legacy headers)."""
    errors = [line for line in res.stderr.splitlines() if not line.startswith("warning:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    assert " error: " in errors[0] and all(c in errors[0] for c in culprits), errors[0]


def warning_lines(res, word: str) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning:") and word in line]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    return out, [str(x.message) for x in w if not x.category.__name__.startswith("Legacy")]


# --------------------------------------------------------------------------------------------------------- stacks
def test_unset_values():
    assert all(header_unset(v) for v in (None, 0.0, -1.0, 1.0, 1.00001, float("nan")))
    assert not any(header_unset(v) for v in (0.5, 1.01, 2.0, PX))


def test_one_angstrom_stack_header_without_star_pixel_size_is_refused(tmp_path, cli_in):
    star, _ = write_no_ctf_set(tmp_path / "set", n_particles=4, header_px=1.0)
    with pytest.raises(InputError, match=r"pixel size absent .* says 1 Å/px, which writers leave .*--pixel-size"):
        read_particles(star, ctf="none")
    for command in ("backproject", "train_nn"):
        res = cli_in(command, star, "-o", tmp_path / command, "--device", "cpu")
        assert_one_error(res, "pixel size absent", "TS_01_000.mrcs", "1 Å/px", "--pixel-size")
    assert not (tmp_path / "backproject").exists() and not (tmp_path / "train_nn" / "weights.pt").exists()
    res = cli_in("backproject", star, "-o", tmp_path / "given", "--device", "cpu", "--pixel-size", PX, "--ctf", "none")
    assert res.returncode == 0 and "13.100 Å/px" in res.stdout, res.stdout + res.stderr


def test_one_angstrom_header_with_star_pixel_size_is_quiet(tmp_path):
    """The STAR's pixel size is "elsewhere": a 1 Å/px header next to it is unset, not a disagreement."""
    star, _ = write_no_ctf_set(tmp_path / "set", n_particles=2, header_px=1.0, star_columns=STAR_PX)
    s, messages = _quiet(read_particles, star, ctf="none", dose="unused")
    assert s.pixel_size == pytest.approx(PX) and messages == []
    star, _ = write_no_ctf_set(tmp_path / "other", n_particles=2, header_px=4.2, star_columns=STAR_PX)
    s, messages = _quiet(read_particles, star, ctf="none", dose="unused")  # a set header that disagrees still warns
    assert s.pixel_size == pytest.approx(PX) and any("differs from 4.2 Å in the MRC header" in m for m in messages)


# ------------------------------------------------------------------------------------------------------ reference
def test_reference_with_unset_header_at_our_box(data, tmp_path, cli_in):
    """A 1 Å/px map at our box is taken at our pixel size (one warning) and names the right match; without the rule
    it was resampled 13-fold and compared noise."""
    star, vol = data
    ref = legacy_map(tmp_path / "mirrored.mrc", flip_hand(vol), 1.0)
    res = cli_in("backproject", star, "-o", tmp_path / "a", "--device", "cpu", "--reference", ref)
    assert res.returncode == 0, res.stderr
    said = warning_lines(res, "--reference")
    assert len(said) == 1 and "says 1 Å/px" in said[0] and "taken at our 13.1 Å/px" in said[0], res.stderr
    assert "(13.1 Å/px, resampled to 13.1 Å/px)" in res.stdout, res.stdout
    assert "best match: mirrored; the flags that give it: --flip-hand (add --flip-hand)" in res.stdout, res.stdout
    res = cli_in("backproject", star, "-o", tmp_path / "b", "--device", "cpu", "--reference", ref, "--flip-hand")
    assert "best match: as is; the flags that give it: --flip-hand (keep --flip-hand)" in res.stdout, res.stdout


def test_reference_with_unset_header_at_another_box_is_refused(data, tmp_path, cli_in):
    star, vol = data
    ref = legacy_map(tmp_path / "big.mrc", np.pad(vol, 4), 1.0)
    res = cli_in("backproject", star, "-o", tmp_path / "a", "--device", "cpu", "--reference", ref, "--ctf", "none")
    assert_one_error(res, "big.mrc", "1 Å/px", "box (40 px) is not ours (32 px)", "--reference-pixel-size")
    assert not (tmp_path / "a").exists()  # before any work
    for command in ("train_nn", "train_vae"):  # checked against the training grid before training, not after it
        res = cli_in(command, star, "-o", tmp_path / command, "--device", "cpu", "--reference", ref, "--epochs", "1")
        assert_one_error(res, "big.mrc", "1 Å/px", "box (40 px) is not ours (32 px)", "--reference-pixel-size")
        assert not (tmp_path / command).exists()


def test_reference_pixel_size_far_from_ours_at_our_box_warns(data, tmp_path, cli_in):
    star, vol = data
    ref = legacy_map(tmp_path / "mirrored_5A.mrc", flip_hand(vol), 5.0)
    res = cli_in("backproject", star, "-o", tmp_path / "a", "--device", "cpu", "--reference", ref)
    said = warning_lines(res, "--reference")
    assert res.returncode == 0 and len(said) == 1, res.stderr
    assert "5 Å/px differs from our 13.1 Å/px by 2.6× while both boxes are 32 px" in said[0]
    res = cli_in("backproject", star, "-o", tmp_path / "b", "--device", "cpu", "--reference", ref,
                 "--reference-pixel-size", PX)  # fmt: skip
    assert res.returncode == 0 and not warning_lines(res, "--reference"), res.stderr
    best = next(line for line in res.stdout.splitlines() if "<- best" in line)
    name, rest = best.split(" CC ")
    assert name.strip() == "mirrored" and float(rest.split()[0]) > 0.9, res.stdout


def _written(path: Path, vol: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(vol, dtype=np.float32))
        m.voxel_size = PX
    return path


def test_unclear_check_advises_nothing(data, tmp_path):
    _, vol = data
    noise = _written(tmp_path / "noise.mrc", np.random.default_rng(3).normal(size=vol.shape))
    check = check_against_reference(vol, PX, noise)
    assert not check.clear and check.best.cc < 0.3
    verdict = check.lines()[-1]
    assert verdict.startswith("best match: unclear (highest CC") and "below 0.3 or within 0.05" in verdict
    assert "no advice on --invert / --flip-hand" in verdict and "flags that give it" not in verdict
    ax = np.arange(32) - 16
    ball = np.exp(-(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2) / 40.0)
    check = check_against_reference(ball, PX, _written(tmp_path / "ball.mrc", ball))  # its own mirror image
    assert check.best.cc > 0.9 and not check.clear and "unclear" in check.lines()[-1]


def test_advice_is_relative_to_the_flags_used(data, tmp_path):
    _, vol = data
    ref = _written(tmp_path / "truth.mrc", vol)
    check = check_against_reference(vol, PX, ref, invert=True)  # a map made with --invert that matches as is
    assert check.clear and check.lines()[-1] == "best match: as is; the flags that give it: --invert (keep --invert)"
    check = check_against_reference(-vol, PX, ref, invert=True)
    assert (
        check.lines()[-1] == "best match: inverted; the flags that give it: no --invert, no --flip-hand (drop --invert)"
    )
    check = check_against_reference(vol, PX, ref)
    assert check.lines()[-1] == "best match: as is; the flags that give it: no --invert, no --flip-hand (as run)"


def test_reference_pixel_size_option_checked_up_front(tmp_path):
    ref = _written(tmp_path / "r.mrc", np.ones((8, 8, 8)))
    with pytest.raises(InputError, match="--reference-pixel-size must be a positive finite pixel size"):
        load_reference(ref, pixel_size=-2.0)
    assert load_reference(ref).pixel_size == pytest.approx(PX)
    assert load_reference(legacy_map(tmp_path / "u.mrc", np.ones((8, 8, 8)), 1.0)).pixel_size is None


# ---------------------------------------------------------------------------------------------------- image size
def test_image_size_column_other_than_the_stacks_warns(tmp_path, cli_in):
    star, _ = write_no_ctf_set(tmp_path / "set", n_particles=2, star_columns={"rlnImageSize": 64})
    s, messages = _quiet(read_particles, star, ctf="none", dose="unused")
    assert s.box_size == 32 and s.pixel_size == pytest.approx(PX)
    said = [m for m in messages if "_rlnImageSize" in m]
    assert len(said) == 1 and "_rlnImageSize says 64 px but the stacks are 32 px" in said[0]
    assert "at 13.1 Å/px" in said[0] and "--pixel-size" in said[0]
    res = cli_in("backproject", star, "-o", tmp_path / "bp", "--device", "cpu", "--ctf", "none")
    assert res.returncode == 0 and len(warning_lines(res, "_rlnImageSize says 64 px")) == 1, res.stderr
    star, _ = write_no_ctf_set(tmp_path / "same", n_particles=2, star_columns={"rlnImageSize": 32})
    assert not [m for m in _quiet(read_particles, star, ctf="none", dose="unused")[1] if "_rlnImageSize" in m]
