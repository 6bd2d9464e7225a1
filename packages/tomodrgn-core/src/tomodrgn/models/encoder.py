"""Encoder: per-tilt MLP (encoder A) on the masked Hartley pixels, pooling, encoder B → (μ, log σ²)."""

from __future__ import annotations

import torch
from torch import nn

from tomodrgn.models.mlp import mlp
from tomodrgn.models.pooling import Pooling
from tomodrgn.physics.lattice import Lattice


class TiltSeriesEncoder(nn.Module):
    """Images (B, T, D+1, D+1) → μ (B, zdim), log σ² (B, zdim).

    Encoder A (``nodes_a x layers_a`` → ``embed_dim``) runs on each tilt's pixels in
    :attr:`Lattice.circular_mask` (all tilts of the batch in one call), or within ``enc_mask`` px of the centre
    when given (cryoDRGN's ``--enc-mask``: leaving out noise-dominated high frequencies helps the encoder at low
    SNR); the T embeddings are pooled; encoder B (``nodes_b x layers_b``) maps the pooled vector to 2·zdim.
    """

    def __init__(
        self,
        D: int,
        zdim: int,
        n_tilts: int,
        arch_a: tuple[int, int] = (256, 3),
        arch_b: tuple[int, int] = (256, 3),
        embed_dim: int = 128,
        pooling: str = "concatenate",
        enc_mask: int | None = None,
    ) -> None:
        super().__init__()
        lat = Lattice(D)
        self.D, self.zdim = D, zdim
        index = lat.circular_indices
        if enc_mask is not None:
            if not 1 <= enc_mask <= D // 2:
                raise ValueError(f"enc_mask must be between 1 and D/2 = {D // 2} px, got {enc_mask}")
            index = index[lat.radius_px[index] <= enc_mask]
        self.register_buffer("mask_index", torch.from_numpy(index.copy()), persistent=False)
        self.encoder_a = mlp(len(index), embed_dim, *arch_a)
        self.pool = Pooling(pooling, embed_dim, n_tilts)
        self.encoder_b = mlp(self.pool.out_dim, 2 * zdim, *arch_b)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = images.shape[:2]
        pixels = images.reshape(b, t, -1).index_select(2, self.mask_index)
        emb = self.encoder_a(pixels)  # (B, T, E)
        out = self.encoder_b(self.pool(emb))
        return out[:, : self.zdim], out[:, self.zdim :]


def phase_flip(images: torch.Tensor, ctf_params: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Images (B, T, D+1, D+1) × sign(CTF): the encoder sees CTF-phase-flipped Hartley images (as the reference does).

    ``ctf_params`` (B, T, 7) as in the dataset; ``freqs`` ((D+1)², 2) Å⁻¹ of the lattice.
    """
    from tomodrgn.physics.ctf import compute_ctf

    b, t = images.shape[:2]
    p = ctf_params.reshape(b * t, 7)
    ctf = compute_ctf(freqs, p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5], p[:, 6])
    return images * torch.sign(ctf).reshape(images.shape)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = μ + ε·exp(½ log σ²); ε ~ N(0, 1) unless given (deterministic noise for reproducible training)."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
