"""Forward model on the kept half lattice and the loss: weighted MSE (dose × tilt weights) + β·KL.

Predicted pixel at kept half-lattice point k of image n: ``CTF_n(k) · [exp(−N_n/2Ne(k))] · translate(h)(k)`` and
the same at −k (CTF² for CTF-premultiplied images; CTF and exposure filter are even in k; the shift mixes h(k) and
h(−k), see :func:`tomodrgn.physics.pose.translate_hartley`). Loss = Σ w·(pred − img)² / Σ w over kept pixels
(k and −k), with w = dose weight × tilt weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tomodrgn.kernels import HalfLattice, MaskedLattice
from tomodrgn.physics.ctf import image_ctf
from tomodrgn.physics.pose import shift_phase


def default_beta(zdim: int, n_tilts: int, D: int) -> float:
    """β = 1 / (|z| + t·D²)."""
    return 1.0 / (zdim + n_tilts * D * D)


def beta_at(beta: float, step: int, warmup_steps: int) -> float:
    """Linear warm-up of β from 0 over ``warmup_steps`` optimiser steps (none when ≤ 0)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per particle, (B,)."""
    return -0.5 * torch.sum(1.0 + logvar - mu * mu - torch.exp(logvar), dim=-1)


def gather_image_pixels(images: torch.Tensor, lattice: HalfLattice, ml: MaskedLattice):
    """Observed Hartley pixels at the kept k and −k: images (N, D+1, D+1) → two (K,) tensors."""
    n1 = images.shape[-1] * images.shape[-2]
    flat = images.reshape(-1)
    base = ml.image * n1
    return flat[base + lattice.pos_index[ml.point]], flat[base + lattice.neg_index[ml.point]]


def render_pixels(
    h_pos: torch.Tensor,
    h_neg: torch.Tensor,
    lattice: HalfLattice,
    ml: MaskedLattice,
    ctf_params: torch.Tensor,
    shift: torch.Tensor,
    cumulative_dose: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted pixels at k and −k from decoded Hartley values (K,).

    ``ctf_params`` (N, 7) [dfu Å, dfv Å, angle °, kV, Cs mm, amplitude contrast, phase °] or (N, 8) with the CTF's
    power last (2: CTF-premultiplied images are predicted with CTF², see
    :func:`tomodrgn.physics.ctf.image_ctf`); ``shift`` (N, 2) Å;
    ``cumulative_dose`` (N,) e⁻/Å² to apply the exposure filter, or None.
    """
    freqs = lattice.freqs.index_select(0, ml.point)  # (K, 2) Å⁻¹
    p = ctf_params.index_select(0, ml.image)
    ctf = image_ctf(freqs[:, None, :], p)[1][:, 0]
    if cumulative_dose is not None:
        ne = lattice.critical_exposure.index_select(0, ml.point)
        ctf = ctf * torch.exp(-cumulative_dose.index_select(0, ml.image) / (2.0 * ne))
    cs = shift_phase(freqs[:, None, :], shift.index_select(0, ml.image))[:, 0]  # per point: (cos φ, sin φ)
    c, s = cs[:, 0], cs[:, 1]
    return ctf * (c * h_pos - s * h_neg), ctf * (c * h_neg + s * h_pos)


@dataclass
class LossTerms:
    """Un-normalised sums of one (local) batch: Σ w·err² (k and −k), Σ w (counted twice: k and −k), Σ KL."""

    sse: torch.Tensor
    wsum: torch.Tensor
    kl_sum: torch.Tensor
    n_particles: int


def loss_terms(
    pred_pos: torch.Tensor,
    pred_neg: torch.Tensor,
    img_pos: torch.Tensor,
    img_neg: torch.Tensor,
    weight: torch.Tensor,
    mu: torch.Tensor | None,
    logvar: torch.Tensor | None,
    n_particles: int,
) -> LossTerms:
    err = (pred_pos - img_pos) ** 2 + (pred_neg - img_neg) ** 2
    sse = torch.sum(weight * err)
    kl = kl_divergence(mu.float(), logvar.float()).sum() if mu is not None else sse.new_zeros(())
    return LossTerms(sse=sse, wsum=2.0 * weight.sum(), kl_sum=kl, n_particles=n_particles)


def combine(terms: LossTerms, wsum_total: torch.Tensor, n_total: torch.Tensor, beta: float, world_size: int = 1):
    """Loss whose gradient, averaged over ``world_size`` processes (DDP), equals the global-batch loss gradient.

    Returns (loss for backward, local mse contribution, local kl contribution) — the latter two summed over
    processes give the global weighted MSE and mean KL.
    """
    mse = terms.sse / wsum_total
    kl = terms.kl_sum / n_total
    return world_size * (mse + beta * kl), mse.detach(), kl.detach()
