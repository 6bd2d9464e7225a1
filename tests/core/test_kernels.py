"""Lattice-mask kernels: torch reference vs a naive loop over the physics conventions, Triton (CPU interpreter and
ahead-of-time sm_90 compile, each in a subprocess because Triton reads its environment at import), and dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.kernels import half_lattice, masked_lattice
from tomodrgn.kernels.dispatch import resolve_backend
from tomodrgn.kernels.lattice_mask_torch import masked_lattice_torch
from tomodrgn.physics.dose import dose_mask, dose_per_tilt, dose_weights, tilt_weights
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import random_rotations

HELPER = Path(__file__).with_name("_triton_interpret_check.py")


def _tilt_batch(n: int, per_tilt: float, seed: int):
    """n images of one series in shuffled acquisition order: cumulative dose (e⁻/Å²), tilt (°), rotations."""
    rng = np.random.default_rng(seed)
    cumulative = (rng.permutation(n) + 1) * per_tilt
    tilt = rng.uniform(-60, 60, n)
    return cumulative, tilt, random_rotations(n, rng)


def _naive(D: int, pixel_size: float, cumulative: np.ndarray, tilt: np.ndarray, rot: np.ndarray, B: np.ndarray):
    """Per-image, per-point python loop built directly from physics.lattice and physics.dose (float64)."""
    lat = Lattice(D)
    circ = lat.circular_indices
    centre = lat.D1 * lat.D1 // 2
    freq = lat.spatial_frequency(pixel_size)
    keep = dose_mask(cumulative, freq)  # (T, (D+1)²)
    dw = dose_weights(cumulative, freq)
    tw = tilt_weights(tilt)
    half = [int(i) for i in circ if i < centre]
    rows = []
    for n in range(len(cumulative)):
        for p, flat in enumerate(half):
            if keep[n, flat]:
                x = lat.coords[flat].astype(np.float64) @ rot[n]
                arg = 2 * np.pi * (x @ B)
                rows.append((n, p, dw[n, flat] * tw[n], x, np.concatenate([np.sin(arg), np.cos(arg)])))
    return half, keep, rows


@pytest.mark.parametrize(("D", "pixel_size", "n"), [(16, 2.0, 5), (32, 3.0, 4)])
def test_torch_reference_matches_naive_loop(D: int, pixel_size: float, n: int) -> None:
    cumulative, tilt, rot = _tilt_batch(n, per_tilt=12.0, seed=D)
    B = np.random.default_rng(1).normal(0, 0.5 * D, (3, 6))
    half, keep_full, rows = _naive(D, pixel_size, cumulative, tilt, rot, B)

    lattice = half_lattice(D, pixel_size)
    assert lattice.pos_index.tolist() == half
    # the mirror −k has negated coordinates and the same mask, so the pair is kept or dropped together
    coords_full = Lattice(D).coords
    np.testing.assert_array_equal(coords_full[lattice.neg_index.numpy()], -coords_full[lattice.pos_index.numpy()])
    np.testing.assert_array_equal(keep_full[:, lattice.neg_index.numpy()], keep_full[:, lattice.pos_index.numpy()])

    mid = cumulative - dose_per_tilt(cumulative) / 2
    out = masked_lattice_torch(
        lattice,
        torch.from_numpy(rot).float(),
        torch.from_numpy(cumulative),
        torch.from_numpy(mid),
        torch.from_numpy(tilt_weights(tilt)).float(),
        torch.from_numpy(B).float(),
    )
    counts = np.bincount([r[0] for r in rows], minlength=n)
    assert (counts > 0).all() and (counts < len(half)).any(), "test doses should mask part of the lattice"
    assert out.image.tolist() == [r[0] for r in rows]
    assert out.point.tolist() == [r[1] for r in rows]
    np.testing.assert_allclose(out.weight.numpy(), [r[2] for r in rows], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.coords.numpy(), np.stack([r[3] for r in rows]), atol=1e-6)
    np.testing.assert_allclose(out.features.numpy(), np.stack([r[4] for r in rows]), atol=2e-4)


def test_per_particle_kept_count_41_tilts() -> None:
    """docs/architecture.md, "Physics": 41 tilts × 3 e⁻/Å², D = 64, 6.55 Å/px keep 96,776 points per particle
    (48,388 half pairs)."""
    n, d = 41, 3.0
    i = np.arange(n, dtype=np.float64)
    lattice = half_lattice(64, 6.55)
    out = masked_lattice_torch(
        lattice,
        torch.eye(3).expand(n, 3, 3),
        torch.from_numpy((i + 1) * d),
        torch.from_numpy((i + 0.5) * d),
        torch.ones(n),
    )
    assert out.image.numel() == 96_776 // 2
    assert out.features is None
    lat = Lattice(64)
    full = dose_mask((i + 1) * d, lat.spatial_frequency(6.55)[lat.circular_indices])
    assert int(full.sum()) == 96_776 == 2 * out.image.numel()


def _run_helper(mode: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(HELPER), mode], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{mode} check failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def test_triton_interpreter_matches_torch_reference() -> None:
    proc = _run_helper("interpret", {**os.environ, "TRITON_INTERPRET": "1"})
    assert "OK interpret cases=7" in proc.stdout


def test_triton_kernels_compile_ahead_of_time_for_sm90(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compile for real, no cache hit
    proc = _run_helper("aot", env)
    assert "OK aot sm_90" in proc.stdout
    assert proc.stdout.count("_masked_lattice_kernel[") == 2 and "_count_kept_kernel[" in proc.stdout
    assert any((tmp_path / "triton-cache").rglob("*.cubin"))


def _small_args(seed: int = 0):
    cumulative, tilt, rot = _tilt_batch(4, per_tilt=12.0, seed=seed)
    mid = cumulative - dose_per_tilt(cumulative) / 2
    return (
        half_lattice(16, 2.0),
        torch.from_numpy(rot).float(),
        torch.from_numpy(cumulative).float(),
        torch.from_numpy(mid).float(),
        torch.from_numpy(tilt_weights(tilt)).float(),
        torch.randn(3, 4, generator=torch.Generator().manual_seed(seed)),
    )


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_dispatch_cpu_uses_torch(backend: str) -> None:
    args = _small_args()
    ref = masked_lattice_torch(*args)
    out = masked_lattice(*args, backend=backend)
    assert resolve_backend(backend, torch.device("cpu")) == "torch"
    for name in ("image", "point", "weight", "coords", "features"):
        assert torch.equal(getattr(out, name), getattr(ref, name)), name


def test_dispatch_auto_picks_triton_on_cuda_and_rejects_unknown_backend() -> None:
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    with pytest.raises(ValueError, match="unknown lattice-mask backend 'cuda'"):
        resolve_backend("cuda", torch.device("cpu"))  # type: ignore[arg-type]


def test_dispatch_triton_on_cpu_without_interpreter_is_a_clear_error() -> None:
    from tomodrgn.kernels.lattice_mask_triton import interpreter_active, masked_lattice_triton

    args = _small_args()
    if interpreter_active():  # this pytest process itself runs under TRITON_INTERPRET=1: triton runs on CPU
        ref = masked_lattice_torch(*args)
        assert torch.equal(masked_lattice(*args, backend="triton").point, ref.point)
        return
    with pytest.raises(InputError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):  # a user's option: one line
        masked_lattice(*args, backend="triton")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        masked_lattice_triton(*args)
