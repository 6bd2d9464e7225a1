"""Conventions checked against derivations that do not use tomodrgn's own forward model or simulator.

The data come from :mod:`_independent_sim` (analytic projections, scipy's Euler angles and Fourier shift, teamtomo's
CTF), written as a Warp 1 STAR (pixel ``_rlnOriginX/Y``, no optics block). An error in a convention that our
simulator shares with our model cancels in the other tests; here it shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_ctf
from _independent_sim import make_dataset, relion_matrix
from _render_check import render_error

from tomodrgn.io.particles import read_particles
from tomodrgn.physics.ctf import compute_ctf
from tomodrgn.physics.pose import euler_to_matrix, matrix_to_euler
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.training import train


def _fsc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FSC of two (D, D, D) maps in 1-px shells 1..D/2 (numpy only)."""
    d = a.shape[0]
    fa, fb = (np.fft.fftshift(np.fft.fftn(v)) for v in (a, b))
    ax = np.arange(d) - d // 2
    shell = np.round(np.sqrt(sum(g**2 for g in np.meshgrid(ax, ax, ax, indexing="ij")))).astype(int)
    out = []
    for s in range(1, d // 2 + 1):
        m = shell == s
        num = np.real(np.sum(fa[m] * np.conj(fb[m])))
        out.append(num / np.sqrt(np.sum(np.abs(fa[m]) ** 2) * np.sum(np.abs(fb[m]) ** 2)))
    return np.asarray(out)


def test_euler_angles_match_scipy_relion_definition():
    """RELION's passive ZYZ matrix is the transpose of scipy's active intrinsic ZYZ rotation; ours equals it."""
    rng = np.random.default_rng(0)
    for rot, tilt, psi in rng.uniform([-180, 0, -180], [180, 180, 180], size=(50, 3)):
        np.testing.assert_allclose(euler_to_matrix(rot, tilt, psi), relion_matrix(rot, tilt, psi), atol=1e-12)
    mats = np.stack([relion_matrix(*a) for a in rng.uniform([-180, 0, -180], [180, 180, 180], size=(50, 3))])
    np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(mats)), mats, atol=1e-9)


@pytest.mark.parametrize("phase_shift", [0.0, 90.0])
def test_ctf_with_phase_plate_matches_torch_ctf(phase_shift):
    D, pixel = 32, 4.0
    ref = torch_ctf.calculate_ctf_2d(
        defocus=1.2, astigmatism=0.05, astigmatism_angle=40.0, voltage=300.0, spherical_aberration=2.7,
        amplitude_contrast=0.07, phase_shift=phase_shift, pixel_size=pixel, image_shape=(D, D), rfft=False,
        fftshift=True,
    ).squeeze()  # fmt: skip
    ky, kx = torch.meshgrid(*(torch.fft.fftshift(torch.fft.fftfreq(D, d=pixel)),) * 2, indexing="ij")
    freqs = torch.stack([kx, ky], -1).reshape(-1, 2).double()
    params = (12500.0, 11500.0, 40.0, 300.0, 2.7, 0.07, phase_shift)
    ours = compute_ctf(freqs, *(torch.tensor(v, dtype=torch.float64) for v in params))
    np.testing.assert_allclose(ours.reshape(D, D).numpy(), ref.double().numpy(), atol=2e-3)


@pytest.fixture(scope="module")
def independent(tmp_path_factory):
    out = tmp_path_factory.mktemp("independent")
    return make_dataset(out)


def test_reader_and_forward_model_match_independent_images(independent):
    """Poses, pixel origins, CTF (phase plate, astigmatism) and dose read from a Warp 1 STAR reproduce the images."""
    star, vol, truth = independent
    series = read_particles(star)
    np.testing.assert_allclose(series.shift / series.pixel_size, truth["origin_px"], atol=1e-5)
    right = render_error(series, vol, +1.0)
    print(f"render error {right:.4f}")
    flipped = render_error(series, vol, -1.0)
    assert right < 0.01, right  # 0.014 before the simulator's gridding correction (our own slices), 0.004 after
    assert flipped > 10 * right, (right, flipped)


def test_train_nn_recovers_independent_map_with_shifts(independent, tmp_path):
    """train_nn on the independent data (±4 px shifts): FSC with the true map ≥ 0.5 beyond half-Nyquist."""
    star, vol, _ = independent
    cfg = TrainConfig(
        mode="homogeneous", dec_arch="128x3", epochs=60, batch_size=8, lr=2e-3, sequential_tilts=True,
        device="cpu", backend="torch", preload=True,
    )  # fmt: skip
    train(star, tmp_path / "run", cfg, progress=False)
    out = load_model(tmp_path / "run").decode(None)[0]
    curve = _fsc(out, vol)
    below = np.flatnonzero(curve < 0.5)
    crossing = (below[0] + 1) / vol.shape[0] if len(below) else 0.5
    print(f"independent map: FSC=0.5 at {crossing:.3f} cycles/px; FSC {np.round(curve, 3)}")
    assert crossing > 0.25, np.round(curve, 3)
    # the hand: the map correlates with the truth, not with its mirror image
    cc = np.corrcoef(out.ravel(), vol.ravel())[0, 1]
    mirror = np.roll(np.flip(vol, axis=0), 1, axis=0)  # z → −z about voxel D/2
    cc_mirror = np.corrcoef(out.ravel(), mirror.ravel())[0, 1]
    assert cc > 0.95 and cc_mirror < cc - 0.3, (cc, cc_mirror)
