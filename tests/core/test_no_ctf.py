"""Data without CTF (and without dose) columns: every command runs with transfer function 1 and says so once.

The fixture is a noiseless simulated set in Warp 1's image-series layout as simulations and CTF-corrected exports
write it: angles, pixel origins and ``_rlnCtfScalefactor`` only (no ``_rlnDefocusU/V/Angle``, voltage, Cs, amplitude
contrast or ``_rlnCtfBfactor``), stacks with Warp 1's legacy MRC header holding the pixel size. The images are made
without tomodrgn: analytic projections of gaussian blobs posed by scipy's Euler angles, shifted by −origin with
``scipy.ndimage.fourier_shift`` (``_independent_sim``).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
import torch_ctf
from _cli_inprocess import assert_user_error, run_cli_as_user
from _independent_sim import blob_projection, blob_volume, gaussian_blobs, make_dataset, relion_matrix
from scipy import ndimage
from scipy.spatial.transform import Rotation
from test_mrc_legacy import legacy_stack

from tomodrgn.analysis.metrics import cc
from tomodrgn.data.dataset import TiltSeriesDataset
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc
from tomodrgn.io.particles import read_particles
from tomodrgn.models.encoder import phase_flip
from tomodrgn.physics.ctf import NO_CTF, compute_ctf, image_ctf
from tomodrgn.physics.lattice import Lattice
from tomodrgn.reconstruct.backproject import prepare_slices

pytestmark = pytest.mark.filterwarnings("ignore::tomodrgn.io.mrc.LegacyMrcHeaderWarning")

BOX, PX = 32, 13.1
TILTS = (0.0, 15.0, -15.0, 30.0, -30.0, 45.0, -45.0)
TINY = ["--epochs", "1", "--batch-size", "4", "--n-tilts", "5", "--dec-arch", "16x2", "--device", "cpu"]


def write_no_ctf_set(folder: Path, n_particles: int = 24, box: int = BOX, header_px: float = PX,
                     star_columns: dict | None = None, seed: int = 0) -> tuple[Path, np.ndarray]:  # fmt: skip
    """Warp 1 image-series STAR + one legacy-header stack per particle, no CTF and no dose columns (module
    docstring); ``star_columns``: extra columns for every row. Returns (STAR, true map [z, y, x] at voxel D/2)."""
    rng = np.random.default_rng(seed)
    (folder / "particles").mkdir(parents=True, exist_ok=True)
    centres, sigma, amp = gaussian_blobs(12, box, rng)
    rows = []
    for p in range(n_particles):
        particle = Rotation.random(random_state=rng.integers(1 << 31))
        name, stack = f"TS_01_{p:03d}", []
        for i, tilt in enumerate(TILTS):
            a = relion_matrix(0.0, tilt, 0.0) @ particle.as_matrix().T  # stage tilt after the particle's pose
            rot, tlt, psi = Rotation.from_matrix(a.T).as_euler("ZYZ", degrees=True)
            origin = rng.uniform(-2.0, 2.0, size=2)  # (x, y) px: the particle's centre sits at −origin
            f = ndimage.fourier_shift(
                np.fft.fft2(blob_projection(centres, sigma, amp, a, box)), (-origin[1], -origin[0])
            )
            stack.append(np.fft.ifft2(f).real)
            rows.append({"rlnImageName": f"{i + 1}@particles/{name}.mrcs", "rlnGroupName": name, "rlnAngleRot": rot,
                         "rlnAngleTilt": tlt, "rlnAnglePsi": psi, "rlnOriginX": origin[0], "rlnOriginY": origin[1],
                         "rlnCtfScalefactor": math.cos(math.radians(tilt)), **(star_columns or {})})  # fmt: skip
        legacy_stack(folder / "particles" / f"{name}.mrcs", np.stack(stack), pixel_size=header_px, style="warp1")
    starfile.write(pd.DataFrame(rows), folder / "particles.star", overwrite=True)
    return folder / "particles.star", blob_volume(centres, sigma, amp, box)


@pytest.fixture(scope="module")
def no_ctf(tmp_path_factory):
    return write_no_ctf_set(tmp_path_factory.mktemp("no_ctf"))


@pytest.fixture
def cli_in(capsys):
    """The command in this process, its warning lines as a user sees them (:func:`run_cli_as_user`)."""
    return lambda *argv: run_cli_as_user(capsys, *argv)


def warning_lines(res, word: str) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning:") and word in line]


# ------------------------------------------------------------------------------------------------- the convention
def test_no_ctf_parameters_give_one_everywhere_like_torch_ctf():
    """NO_CTF makes our CTF exactly 1 at every frequency (any voltage), and teamtomo's torch-ctf, an independent
    CTF, gives 1 for the same parameters; the phase flip is then a no-op."""
    freqs = torch.from_numpy(Lattice(BOX).freqs2d(PX))
    for kv in (300.0, 200.0):
        p = torch.tensor([[NO_CTF["defocus_u"], NO_CTF["defocus_v"], NO_CTF["defocus_angle"], kv, NO_CTF["cs"],
                           NO_CTF["amplitude_contrast"], NO_CTF["phase_shift"], 1.0]])  # fmt: skip
        for dtype in (torch.float32, torch.float64):
            c, t = image_ctf(freqs[None].to(dtype), p.to(dtype))
            assert torch.equal(c, torch.ones_like(c)) and torch.equal(t, torch.ones_like(t))
    theirs = torch_ctf.calculate_ctf_2d(defocus=0.0, astigmatism=0.0, astigmatism_angle=0.0, voltage=300.0,
                                        spherical_aberration=0.0, amplitude_contrast=1.0, phase_shift=0.0,
                                        pixel_size=PX, image_shape=(BOX, BOX), rfft=False, fftshift=False)  # fmt: skip
    np.testing.assert_allclose(theirs.numpy(), 1.0, atol=1e-6)
    real = compute_ctf(freqs, *torch.tensor([[50000.0], [48000.0], [20.0], [300.0], [2.7], [0.07], [0.0]]))
    assert real.min() < -0.5  # a real CTF is not 1: the check above can fail
    images = torch.randn(1, 2, BOX + 1, BOX + 1)
    assert torch.equal(phase_flip(images, p.expand(1, 2, 8), freqs.float()), images)


# -------------------------------------------------------------------------------------------------------- reading
def test_reader_takes_the_set_as_ctf_free_with_one_warning_each(no_ctf):
    star, _ = no_ctf
    with pytest.warns(UserWarning) as record:
        s = read_particles(star)
    ours = [str(w.message) for w in record if "CTF" in str(w.message) or "dose" in str(w.message)]
    assert len(ours) == 2, ours
    assert "no CTF columns (_rlnDefocusU/V/Angle)" in ours[0] and "transfer function 1" in ours[0]
    assert "no dose columns (_rlnCtfBfactor): dose weighting and the dose mask are off" in ours[1]
    assert not s.has_ctf and not s.has_dose and s.ctf_premultiplied is None
    assert s.pixel_size == pytest.approx(PX) and s.box_size == BOX  # from the legacy header
    np.testing.assert_array_equal(s.dose, 0.0)
    np.testing.assert_allclose(s.tilt[:3], [0.0, 15.0, 15.0], atol=1e-4)  # cos(tilt): the sign is lost
    np.testing.assert_array_equal(s.ctf_params()[0], [0.0, 0.0, 0.0, 300.0, 0.0, 1.0, 0.0])
    ds = TiltSeriesDataset(s, n_tilts=7, sequential=True)
    item = ds[0]
    c, t = image_ctf(torch.from_numpy(Lattice(BOX).freqs2d(PX)).float()[None], item["ctf"])
    assert torch.equal(t, torch.ones_like(t)) and torch.equal(item["dose"], torch.zeros(7))


def test_ctf_none_reads_silently_and_unused_reads_a_complete_ctf(no_ctf, tmp_path):
    star, _ = no_ctf
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = read_particles(star, ctf="none", dose="unused")
    assert not [x for x in w if "CTF" in str(x.message) or "dose" in str(x.message)]
    assert not s.has_ctf
    with_ctf, _, _ = make_dataset(tmp_path / "ctf", n_particles=2)
    forced = read_particles(with_ctf, ctf="none")  # --no-ctf on a file that has CTF columns
    plain = read_particles(with_ctf, ctf="unused")
    assert not forced.has_ctf and plain.has_ctf and plain.defocus_u.min() > 1000.0
    np.testing.assert_array_equal(forced.ctf_params()[:, [0, 4, 5]], [[0.0, 0.0, 1.0]] * forced.n_images)
    np.testing.assert_array_equal(forced.voltage, plain.voltage)
    np.testing.assert_array_equal(forced.dose, plain.dose)
    ds = TiltSeriesDataset(plain, n_tilts=2, sequential=True, ctf=False)  # a run's --no-ctf on a series with CTF
    np.testing.assert_array_equal(ds[0]["ctf"][:, [0, 4, 5, 7]].numpy(), [[0.0, 0.0, 1.0, 1.0]] * 2)
    with pytest.raises(InputError, match="ctf must be one of auto, none, unused, got 'off'"):
        read_particles(star, ctf="off")


def test_partial_ctf_is_refused_naming_the_missing_columns(tmp_path, cli_in):
    star, _, _ = make_dataset(tmp_path / "partial", n_particles=2)
    df = starfile.read(star)
    starfile.write(df.drop(columns=["rlnVoltage", "rlnSphericalAberration"]), star, overwrite=True)
    message = r"incomplete CTF: required column\(s\) _rlnVoltage, _rlnSphericalAberration missing; pass --no-ctf"
    with pytest.raises(InputError, match=message):
        read_particles(star)
    res = cli_in("backproject", star, "-o", tmp_path / "bp", "--device", "cpu")
    assert_user_error(res, "particles.star", "_rlnVoltage, _rlnSphericalAberration", "--ctf none")
    assert not (tmp_path / "bp").exists()
    assert cli_in("backproject", star, "-o", tmp_path / "bp", "--device", "cpu", "--ctf", "none").returncode == 0
    res = cli_in("downsample", star, "-D", "16", "-o", tmp_path / "ds")  # never uses a CTF: asks for none
    assert res.returncode == 0 and not warning_lines(res, "CTF"), res.stderr


def test_backprojection_with_transfer_function_one(no_ctf):
    """prepare_slices on CTF-free images: phase flip and Wiener give the values and weights of no correction."""
    star, _ = no_ctf
    s = read_particles(star, ctf="none", dose="unused")
    rows = np.arange(7)
    args = (torch.from_numpy(s.read_images(rows)), s.pixel_size, torch.from_numpy(s.rotation[rows]),
            torch.from_numpy(s.shift[rows]), torch.from_numpy(s.ctf_params(rows, power=True)))  # fmt: skip
    none = prepare_slices(*args, ctf="none")
    for mode in ("phase-flip", "wiener"):
        got = prepare_slices(*args, ctf=mode)
        for a, b in zip(got, none):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------------------- commands
def test_backproject_no_ctf_set_matches_the_phantom(no_ctf, tmp_path, cli_in):
    star, vol = no_ctf
    res = cli_in("backproject", star, "-o", tmp_path / "bp", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert len(warning_lines(res, "no CTF columns")) == 1 and not warning_lines(res, "dose"), res.stderr
    got = read_mrc(tmp_path / "bp" / "backproject.mrc")[0]
    assert cc(got, vol) > 0.9, cc(got, vol)

    res = cli_in("backproject", star, "-o", tmp_path / "none", "--device", "cpu", "--ctf", "none", "--dose-weight")
    assert res.returncode == 0, res.stderr
    assert not warning_lines(res, "CTF"), res.stderr  # the user said so
    assert len(warning_lines(res, "no dose columns (_rlnCtfBfactor): dose weighting and the dose mask are off")) == 1
    np.testing.assert_allclose(read_mrc(tmp_path / "none" / "backproject.mrc")[0], got, atol=1e-5)  # dose 0: weight 1


@pytest.mark.parametrize("command", ["train_nn", "train_vae"])
def test_train_one_epoch_on_the_no_ctf_set(no_ctf, tmp_path, cli_in, command):
    star, _ = no_ctf
    extra = ["--zdim", "2", "--enc-arch-a", "16x1"] if command == "train_vae" else []
    res = cli_in(command, star, "-o", tmp_path / "run", *TINY, *extra)
    assert res.returncode == 0, res.stderr
    assert len(warning_lines(res, "no CTF columns")) == 1, res.stderr
    assert len(warning_lines(res, "no dose columns")) == 1, res.stderr
    assert (tmp_path / "run" / "weights.pt").exists()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ctf"] is True


def test_train_no_ctf_on_a_set_with_ctf_columns(tmp_path, cli_in):
    star, _, _ = make_dataset(tmp_path / "ctf", n_particles=8)
    res = cli_in("train_nn", star, "-o", tmp_path / "run", *TINY, "--no-ctf")
    assert res.returncode == 0, res.stderr
    assert not warning_lines(res, "CTF") and not warning_lines(res, "dose"), res.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["ctf"] is False


def test_downsample_and_filter_star_ask_for_no_ctf_or_dose(no_ctf, tmp_path, cli_in):
    star, _ = no_ctf
    res = cli_in("downsample", star, "-D", "16", "-o", tmp_path / "ds")
    assert res.returncode == 0, res.stderr
    assert not warning_lines(res, "CTF") and not warning_lines(res, "dose"), res.stderr
    small = read_particles(tmp_path / "ds" / "particles.star", ctf="none", dose="unused")
    assert small.box_size == 16 and small.pixel_size == pytest.approx(2 * PX)
    (tmp_path / "ind.txt").write_text("0\n3\n")
    res = cli_in("filter_star", star, "--indices", tmp_path / "ind.txt", "-o", tmp_path / "f.star")
    assert res.returncode == 0, res.stderr
    assert not warning_lines(res, "CTF") and not warning_lines(res, "dose"), res.stderr
    kept = starfile.read(tmp_path / "f.star")
    assert sorted(set(kept["rlnGroupName"])) == ["TS_01_000", "TS_01_003"]
