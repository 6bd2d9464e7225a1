"""Triton implementation of the lattice-mask step (same contract as :func:`masked_lattice_torch`).

Two passes over a (image, block of points) grid, N images on grid axis 0 and ⌈P / BLOCK_P⌉ point blocks on axis 1:

1. ``_count_kept_kernel`` counts the kept points of each (image, block): mid_dose[n] < optimal_exposure[p].
2. The host takes an exclusive prefix sum of the (N, n_blocks) counts in image-major, block-ascending order: that is
   the int64 output offset of each (image, block), and the last inclusive sum is K, the total kept.
3. ``_masked_lattice_kernel`` recomputes the mask (same code, so the same set), places each kept point at
   ``offset + cumsum(mask) − 1`` (so the order is image-major and point-ascending, like ``torch.nonzero``) and writes
   image, point, weight = exp(−N/(2·Ne))·tilt_weight, coords = c @ R and, if asked, the Fourier features
   ``[sin(2π x·B), cos(2π x·B)]`` (K, 2F), F handled in chunks of BLOCK_F.

Lattice-only quantities (optimal and critical exposure, computed on the host in float64) come in as tensors; the
dose comparison is done in float64 so that it matches the reference's (type-promoted) comparison bit for bit.
All output offsets are int64.

Runs on CUDA tensors, or on CPU tensors when ``TRITON_INTERPRET=1`` was set before this module was imported.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tomodrgn.kernels.lattice_mask_torch import HalfLattice, MaskedLattice

BLOCK_P = 128
"""Lattice points per program."""
MAX_BLOCK_F = 16
"""Largest chunk of Fourier-feature columns handled at once (power of 2)."""
NUM_WARPS = 8
"""Warps of the writing kernel: a (BLOCK_P, BLOCK_F) sin/cos tile at 8 warps stays at ~120 registers on sm_90."""


@triton.jit
def _keep_mask(mid_dose_ptr, opt_exp_ptr, n, p_offs, P):
    """(BLOCK_P,) bool: point in range and mid_dose[n] < optimal_exposure[p], compared in float64."""
    in_range = p_offs < P
    opt = tl.load(opt_exp_ptr + p_offs, mask=in_range, other=0.0).to(tl.float64)
    mid = tl.load(mid_dose_ptr + n).to(tl.float64)
    return in_range & (mid < opt)


@triton.jit
def _count_kept_kernel(mid_dose_ptr, opt_exp_ptr, counts_ptr, P, n_blocks, BLOCK_P: tl.constexpr):
    """counts[n, b] = number of kept points of image n in point block b."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    p_offs = b * BLOCK_P + tl.arange(0, BLOCK_P)
    keep = _keep_mask(mid_dose_ptr, opt_exp_ptr, n, p_offs, P)
    tl.store(counts_ptr + n * n_blocks + b, tl.sum(keep.to(tl.int32), axis=0))


@triton.jit
def _masked_lattice_kernel(
    mid_dose_ptr,
    cum_dose_ptr,
    tilt_weight_ptr,
    rot_ptr,
    opt_exp_ptr,
    crit_exp_ptr,
    lat_coords_ptr,
    offsets_ptr,
    feat_mat_ptr,
    out_image_ptr,
    out_point_ptr,
    out_weight_ptr,
    out_coords_ptr,
    out_feat_ptr,
    P,
    F,
    n_blocks,
    BLOCK_P: tl.constexpr,
    BLOCK_F: tl.constexpr,
    FEATURES: tl.constexpr,
):
    """Write the kept points of (image n, point block b) compacted from ``offsets[n, b]`` (int64)."""
    n = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1).to(tl.int64)
    p_offs = b * BLOCK_P + tl.arange(0, BLOCK_P)
    keep = _keep_mask(mid_dose_ptr, opt_exp_ptr, n, p_offs, P)
    local = tl.cumsum(keep.to(tl.int32), axis=0) - 1
    dest = tl.load(offsets_ptr + n * n_blocks + b) + local.to(tl.int64)  # (BLOCK_P,) int64

    tl.store(out_image_ptr + dest, tl.zeros([BLOCK_P], dtype=tl.int64) + n, mask=keep)
    tl.store(out_point_ptr + dest, p_offs, mask=keep)

    # dose weight × tilt weight
    ne = tl.load(crit_exp_ptr + p_offs, mask=keep, other=1.0).to(tl.float32)
    cum = tl.load(cum_dose_ptr + n).to(tl.float32)
    tw = tl.load(tilt_weight_ptr + n).to(tl.float32)
    tl.store(out_weight_ptr + dest, tl.exp(-cum / (2.0 * ne)) * tw, mask=keep)

    # rotated coordinates: x_i = Σ_j c_j R[j, i]
    c0 = tl.load(lat_coords_ptr + p_offs * 3 + 0, mask=keep, other=0.0)
    c1 = tl.load(lat_coords_ptr + p_offs * 3 + 1, mask=keep, other=0.0)
    c2 = tl.load(lat_coords_ptr + p_offs * 3 + 2, mask=keep, other=0.0)
    r = rot_ptr + n * 9
    x0 = c0 * tl.load(r + 0) + c1 * tl.load(r + 3) + c2 * tl.load(r + 6)
    x1 = c0 * tl.load(r + 1) + c1 * tl.load(r + 4) + c2 * tl.load(r + 7)
    x2 = c0 * tl.load(r + 2) + c1 * tl.load(r + 5) + c2 * tl.load(r + 8)
    tl.store(out_coords_ptr + dest * 3 + 0, x0, mask=keep)
    tl.store(out_coords_ptr + dest * 3 + 1, x1, mask=keep)
    tl.store(out_coords_ptr + dest * 3 + 2, x2, mask=keep)

    if FEATURES:
        two_pi = 6.283185307179586  # 2π
        row = out_feat_ptr + dest[:, None] * (2 * F)  # (BLOCK_P, 1) pointers, int64 offsets
        for f0 in range(0, F, BLOCK_F):
            f_offs = f0 + tl.arange(0, BLOCK_F)
            f_in = f_offs < F
            b0 = tl.load(feat_mat_ptr + f_offs, mask=f_in, other=0.0)
            b1 = tl.load(feat_mat_ptr + F + f_offs, mask=f_in, other=0.0)
            b2 = tl.load(feat_mat_ptr + 2 * F + f_offs, mask=f_in, other=0.0)
            arg = two_pi * (x0[:, None] * b0[None, :] + x1[:, None] * b1[None, :] + x2[:, None] * b2[None, :])
            m2 = keep[:, None] & f_in[None, :]
            tl.store(row + f_offs[None, :], tl.sin(arg), mask=m2)
            tl.store(row + F + f_offs[None, :], tl.cos(arg), mask=m2)


def interpreter_active() -> bool:
    """True when the kernels of this module were built for the Triton CPU interpreter (``TRITON_INTERPRET=1``)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_masked_lattice_kernel, InterpretedFunction)


def _check_device(device: torch.device) -> None:
    if device.type != "cuda" and not interpreter_active():
        raise RuntimeError(
            f"masked_lattice_triton needs CUDA tensors (got device '{device}'); use backend='torch' on CPU, or set "
            "TRITON_INTERPRET=1 before Triton is imported to run the kernels in the (slow) CPU interpreter"
        )


def _check_inputs(
    lattice: HalfLattice,
    rotations: torch.Tensor,
    cumulative_dose: torch.Tensor,
    mid_dose: torch.Tensor,
    tilt_weight: torch.Tensor,
    feature_matrix: torch.Tensor | None,
) -> int:
    """N, the number of images, once the device (CUDA, or the interpreter), the lattice's device and the shapes
    ((N, 3, 3) rotations, (N,) doses and tilt weights, (3, F) feature matrix) are checked, in that order."""
    device = rotations.device
    _check_device(device)
    if lattice.coords.device != device:
        raise ValueError(
            f"lattice is on '{lattice.coords.device}' but rotations on '{device}': move it with lattice.to(device)"
        )
    n_images = int(rotations.shape[0])
    if rotations.shape != (n_images, 3, 3):
        raise ValueError(f"rotations must have shape (N, 3, 3), got {tuple(rotations.shape)}")
    for name, t in (("cumulative_dose", cumulative_dose), ("mid_dose", mid_dose), ("tilt_weight", tilt_weight)):
        if t.shape != (n_images,):
            raise ValueError(f"{name} must have shape ({n_images},) like rotations, got {tuple(t.shape)}")
    if feature_matrix is not None and (feature_matrix.ndim != 2 or feature_matrix.shape[0] != 3):
        raise ValueError(f"feature_matrix must have shape (3, F), got {tuple(feature_matrix.shape)}")
    return n_images


def _kept_offsets(
    mid: torch.Tensor, opt: torch.Tensor, n_images: int, P: int, n_blocks: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """(offsets, K): first pass. ``offsets`` (N·n_blocks,) int64 is the exclusive prefix sum of the kept-point
    counts of each (image, block) in image-major, block-ascending order; K is the total kept (one device sync)."""
    counts = torch.empty((n_images, n_blocks), dtype=torch.int32, device=device)
    if n_images > 0:
        _count_kept_kernel[(n_images, n_blocks)](mid, opt, counts, P, n_blocks, BLOCK_P=BLOCK_P)
    inclusive = torch.cumsum(counts.reshape(-1).to(torch.int64), dim=0)
    K = int(inclusive[-1]) if inclusive.numel() else 0
    offsets = inclusive - counts.reshape(-1)
    return offsets, K


def _empty_outputs(K: int, n_feat: int | None, coord_dtype: torch.dtype, device: torch.device) -> MaskedLattice:
    """Uninitialised outputs for K kept points: image, point (K,) int64, weight (K,) float32, coords (K, 3) and,
    unless ``n_feat`` is None (no feature matrix), features (K, 2·n_feat), both in ``coord_dtype``."""
    return MaskedLattice(
        image=torch.empty(K, dtype=torch.int64, device=device),
        point=torch.empty(K, dtype=torch.int64, device=device),
        weight=torch.empty(K, dtype=torch.float32, device=device),
        coords=torch.empty((K, 3), dtype=coord_dtype, device=device),
        features=None if n_feat is None else torch.empty((K, 2 * n_feat), dtype=coord_dtype, device=device),
    )


def _write_kept(
    out: MaskedLattice,
    lattice: HalfLattice,
    rotations: torch.Tensor,
    cumulative_dose: torch.Tensor,
    tilt_weight: torch.Tensor,
    feature_matrix: torch.Tensor | None,
    mid: torch.Tensor,
    opt: torch.Tensor,
    offsets: torch.Tensor,
) -> None:
    """Second pass: fill ``out`` (K ≥ 1 rows) with the kept points, each (image, block) from its int64 ``offsets``
    entry. ``mid`` / ``opt``: the contiguous mid doses (N,) and optimal exposures (P,) the first pass counted with."""
    n_images, P = int(rotations.shape[0]), lattice.n_points
    n_blocks = triton.cdiv(P, BLOCK_P)
    device, coord_dtype = rotations.device, lattice.coords.dtype
    n_feat = 0 if feature_matrix is None else int(feature_matrix.shape[1])
    feat_mat = (
        feature_matrix.to(device=device, dtype=coord_dtype).contiguous()
        if feature_matrix is not None
        else torch.zeros(3, dtype=coord_dtype, device=device)
    )
    block_f = min(MAX_BLOCK_F, triton.next_power_of_2(max(n_feat, 1)))
    _masked_lattice_kernel[(n_images, n_blocks)](
        mid,
        cumulative_dose.contiguous(),
        tilt_weight.contiguous(),
        rotations.to(coord_dtype).contiguous(),
        opt,
        lattice.critical_exposure.contiguous(),
        lattice.coords.contiguous(),
        offsets,
        feat_mat,
        out.image,
        out.point,
        out.weight,
        out.coords,
        out.features if out.features is not None else out.weight,  # unused when FEATURES is False
        P,
        n_feat,
        n_blocks,
        BLOCK_P=BLOCK_P,
        BLOCK_F=block_f,
        FEATURES=feature_matrix is not None,
        num_warps=NUM_WARPS,
    )


def masked_lattice_triton(
    lattice: HalfLattice,
    rotations: torch.Tensor,
    cumulative_dose: torch.Tensor,
    mid_dose: torch.Tensor,
    tilt_weight: torch.Tensor,
    feature_matrix: torch.Tensor | None = None,
) -> MaskedLattice:
    """Triton lattice-mask step for N images; same result and order as :func:`masked_lattice_torch`.

    ``rotations`` (N, 3, 3); ``cumulative_dose`` (N,) e⁻/Å²; ``mid_dose`` (N,) e⁻/Å² (keep: mid_dose < optimal
    exposure); ``tilt_weight`` (N,); ``feature_matrix`` B (3, F) or None. ``lattice`` must be on the same device.
    Synchronises with the device once (to read K, the number of kept points, before allocating the outputs).
    """
    n_images = _check_inputs(lattice, rotations, cumulative_dose, mid_dose, tilt_weight, feature_matrix)
    device = rotations.device
    n_blocks = triton.cdiv(lattice.n_points, BLOCK_P)
    mid = mid_dose.contiguous()
    opt = lattice.optimal_exposure.contiguous()
    offsets, K = _kept_offsets(mid, opt, n_images, lattice.n_points, n_blocks, device)
    n_feat = None if feature_matrix is None else int(feature_matrix.shape[1])
    out = _empty_outputs(K, n_feat, lattice.coords.dtype, device)
    if K > 0:
        _write_kept(out, lattice, rotations, cumulative_dose, tilt_weight, feature_matrix, mid, opt, offsets)
    return out


__all__ = ["BLOCK_P", "MAX_BLOCK_F", "NUM_WARPS", "interpreter_active", "masked_lattice_triton"]
