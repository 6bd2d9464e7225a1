"""Run-time choice of the lattice-mask backend."""

from __future__ import annotations

from typing import Literal

import torch

from tomodrgn.io.errors import InputError
from tomodrgn.kernels.lattice_mask_torch import HalfLattice, MaskedLattice, masked_lattice_torch

Backend = Literal["auto", "torch", "triton"]


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """``auto`` → ``triton`` on CUDA when Triton imports, else ``torch``.

    ``triton`` on a non-CUDA device is allowed only when the kernels run in the Triton CPU interpreter
    (``TRITON_INTERPRET=1`` set before Triton was imported); otherwise it raises a RuntimeError saying so.
    """
    if backend not in ("auto", "torch", "triton"):
        raise InputError(f"unknown lattice-mask backend {backend!r}: expected 'auto', 'torch' or 'triton'")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend == "triton":
        if not triton_available():
            raise InputError("backend 'triton' requested but Triton is not installed (pip install triton)")
        if device.type != "cuda":
            from tomodrgn.kernels.lattice_mask_triton import interpreter_active

            if not interpreter_active():
                raise InputError(
                    f"backend 'triton' needs CUDA tensors (got device '{device}'); use backend='torch' or 'auto' "
                    "on CPU, or set TRITON_INTERPRET=1 before Triton is imported to use the CPU interpreter"
                )
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
