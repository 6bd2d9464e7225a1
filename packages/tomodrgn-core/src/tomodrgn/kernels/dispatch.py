"""Run-time choice of the lattice-mask backend."""

from __future__ import annotations

from typing import Literal

import torch

from tomodrgn.kernels.lattice_mask_torch import HalfLattice, MaskedLattice, masked_lattice_torch

Backend = Literal["auto", "torch", "triton"]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """``auto`` → ``triton`` on CUDA when Triton imports, else ``torch``."""
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend == "triton" and not triton_available():
        raise RuntimeError("backend 'triton' requested but Triton is not installed (pip install triton)")
    return backend


def masked_lattice(
    lattice: HalfLattice,
    rotations: torch.Tensor,
    cumulative_dose: torch.Tensor,
    mid_dose: torch.Tensor,
    tilt_weight: torch.Tensor,
    feature_matrix: torch.Tensor | None = None,
    backend: Backend = "auto",
) -> MaskedLattice:
    """Mask, weight, compact, rotate and featurise the half lattice for N images (see ``masked_lattice_torch``)."""
    if resolve_backend(backend, rotations.device) == "triton":
        from tomodrgn.kernels.lattice_mask_triton import masked_lattice_triton

        return masked_lattice_triton(lattice, rotations, cumulative_dose, mid_dose, tilt_weight, feature_matrix)
    return masked_lattice_torch(lattice, rotations, cumulative_dose, mid_dose, tilt_weight, feature_matrix)
