"""Contrast: the published tomoDRGN's CTF is the negative of RELION's (and ours), and its default inverts the images.

The data are made here with tomoDRGN's own CTF formula (its ``tomodrgn/ctf.py``, ``compute_ctf``), written out with
numpy, not with ``tomodrgn.physics.ctf``: ``ctf_T = sin(−π·λ·Δf·k² + π/2·Cs·λ³·k⁴ − φ − asin w)``. tomoDRGN's forward
model compares (slice of the map) × ctf_T with (image × (−1 unless ``--uninvert-data``)), so

- set (a), image = −ctf_T × projection, is what tomoDRGN reconstructs as positive density by default, and
- set (b), image = +ctf_T × projection, needs ``--uninvert-data``.

Since ctf_T = −ctf_RELION, (a) is a RELION-convention (white-particle) set: our ``backproject`` gives positive density
without ``--invert``, and (b) with it. ``backproject_voxel`` (tomoDRGN's spelling) must give the same map with
tomoDRGN's flags (docs/architecture.md, "Contrast: the published tomoDRGN's CTF sign and --uninvert-data").
Phantom, projections and poses: ``_independent_sim`` (analytic projections of positive gaussian blobs, scipy Euler
angles).
"""

from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from _cli_inprocess import run_cli
from _independent_sim import (
    blob_projection,
    blob_volume,
    exposure_filter,
    gaussian_blobs,
    relion_matrix,
    warp1_row,
)
from scipy.spatial.transform import Rotation

BOX = 32
APIX = 10.0
VOLTAGE, CS, W = 300.0, 2.7, 0.07
TILTS = (0.0, 10.0, -10.0, 20.0, -20.0, 30.0, -30.0, 40.0, -40.0, 50.0)
DOSE_PER_TILT = 3.0
N_PARTICLES = 24


def tomodrgn_ctf(du, dv, angle_deg, phase_shift_deg=0.0) -> np.ndarray:
    """The published tomoDRGN's CTF (box, box) on the unshifted numpy FFT grid [ky, kx], parameters in Å / degrees:
    sin(−π·Δf·λ·k² + π/2·Cs·λ³·k⁴ − (φ + asin w)), Δf = (u+v)/2 + (u−v)/2·cos 2(θ_k − α), θ_k from the x axis."""
    ky, kx = np.meshgrid(np.fft.fftfreq(BOX, APIX), np.fft.fftfreq(BOX, APIX), indexing="ij")
    k2 = kx**2 + ky**2
    volt = VOLTAGE * 1e3
    lam = 12.2639 / np.sqrt(volt + 0.97845e-6 * volt**2)
    cs = CS * 1e7
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2 * (np.arctan2(ky, kx) - np.deg2rad(angle_deg)))
    phase = np.deg2rad(phase_shift_deg) + np.arcsin(W)
    return np.sin(-np.pi * df * lam * k2 + np.pi / 2 * cs * lam**3 * k2**2 - phase)


def write_set(outdir: Path, sign: float, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A Warp-1 image-series STAR + one stack per particle with image = sign × ctf_T × projection (× the exposure
    filter); returns (STAR path, the true map [z, y, x], positive density)."""
    rng = np.random.default_rng(seed)
    (outdir / "particles").mkdir(parents=True, exist_ok=True)
    centres, sigma, amp = gaussian_blobs(12, BOX, rng)
    rows = []
    for p in range(N_PARTICLES):
        particle = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix().T  # a RELION matrix
        defocus, astig, angle = rng.uniform(20000.0, 40000.0), rng.uniform(0.0, 300.0), rng.uniform(0.0, 180.0)
        du, dv = defocus + astig / 2, defocus - astig / 2
        ctf = tomodrgn_ctf(du, dv, angle)
        name = f"tomo_{p:03d}"
        stack = []
        for i, tilt in enumerate(TILTS):
            a = relion_matrix(0.0, tilt, 0.0) @ particle  # stage tilt after the particle's pose
            rot, tlt, psi = Rotation.from_matrix(a.T).as_euler("ZYZ", degrees=True)
            dose = (i + 1) * DOSE_PER_TILT
            f = np.fft.fft2(blob_projection(centres, sigma, amp, a, BOX))
            stack.append(np.fft.ifft2(sign * ctf * exposure_filter(dose, BOX, APIX) * f).real.astype(np.float32))
            ctf_columns = (VOLTAGE, CS, W, 0.0, du, dv, angle)
            rows.append(warp1_row(name, i, p, APIX, ctf_columns, (rot, tlt, psi), (0.0, 0.0), dose, tilt))
        with mrcfile.new(outdir / "particles" / f"{name}.mrcs", overwrite=True) as m:
            m.set_data(np.stack(stack))
            m.set_image_stack()
            m.voxel_size = APIX
    star = outdir / "particles.star"
    starfile.write(pd.DataFrame(rows), star, overwrite=True)
    return star, blob_volume(centres, sigma, amp, BOX)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """{"a": image = −ctf_T·projection (tomoDRGN's default), "b": +ctf_T·projection (tomoDRGN --uninvert-data)}."""
    root = tmp_path_factory.mktemp("tomodrgn_contrast")
    return {name: write_set(root / name, sign) for name, sign in (("a", -1.0), ("b", 1.0))}


def _cc(vol: np.ndarray, truth: np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(vol, np.float64).ravel(), np.asarray(truth, np.float64).ravel())[0, 1])


def _read(path: Path) -> np.ndarray:
    with mrcfile.open(path, permissive=True) as m:
        return np.array(m.data)


# (set, flag, positive density?): the flag is our --invert in test_backproject_contrast and tomoDRGN's
# --uninvert-data in test_backproject_voxel_contrast; the claim is that they are the same flag
CASES = [("a", False, True), ("b", True, True), ("a", True, False), ("b", False, False)]


def test_tomodrgn_ctf_is_minus_ours():
    """The identity behind the mapping: tomoDRGN's CTF is −(RELION's) = −(ours), −w at DC, astigmatism included."""
    import torch

    from tomodrgn.physics.ctf import compute_ctf

    du, dv, angle = 31000.0, 29500.0, 37.0
    ky, kx = np.meshgrid(np.fft.fftfreq(BOX, APIX), np.fft.fftfreq(BOX, APIX), indexing="ij")
    freqs = torch.from_numpy(np.stack([kx.ravel(), ky.ravel()], -1))[None]
    ours = compute_ctf(freqs, *(torch.tensor([v], dtype=torch.float64) for v in (du, dv, angle, VOLTAGE, CS, W, 0.0)))
    theirs = tomodrgn_ctf(du, dv, angle)
    np.testing.assert_allclose(theirs.ravel(), -ours[0].numpy(), atol=2e-3)
    assert theirs[0, 0] == pytest.approx(-W)


@pytest.mark.parametrize("name,invert,positive", CASES)
def test_backproject_contrast(capsys, tmp_path, sets, name, invert, positive):
    star, truth = sets[name]
    out = tmp_path / "bp"
    res = run_cli(capsys, "backproject", star, "-o", out, "--device", "cpu", *(["--invert"] if invert else []))
    assert res.returncode == 0, res.stderr
    c = _cc(_read(out / "backproject.mrc"), truth)
    assert (c > 0.5) if positive else (c < -0.5), (name, invert, c)


@pytest.mark.parametrize("name,uninvert,positive", CASES)
def test_backproject_voxel_contrast(capsys, tmp_path, sets, name, uninvert, positive):
    star, truth = sets[name]
    out = tmp_path / "vol.mrc"
    flags = ["--uninvert-data"] if uninvert else []
    res = run_cli(capsys, "backproject_voxel", star, "--output", out, *flags)
    assert res.returncode == 0, res.stderr
    for suffix in ("_filt", "_half1", "_half2"):
        assert (out.parent / f"vol{suffix}.mrc").is_file(), suffix
    c = _cc(_read(out), truth)
    assert (c > 0.5) if positive else (c < -0.5), (name, uninvert, c)
