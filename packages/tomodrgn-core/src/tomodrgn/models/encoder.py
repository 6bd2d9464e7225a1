"""Encoders of a particle's tilt series → (μ, log σ²) of z.

- ``per-tilt`` (:class:`TiltSeriesEncoder`, the published tomoDRGN encoder): MLP (encoder A) on each tilt's masked
  Hartley pixels, pooling of the tilt embeddings, MLP (encoder B).
- ``reference-frame`` (:class:`ReferenceFrameEncoder`): the low-frequency pixels of all tilts are placed at their
  3-D positions in the volume frame (central-slice theorem, the particle's known poses), averaged per voxel, and
  one MLP reads the resulting sparse 3-D Hartley grid. A structural difference then shows up at the same inputs for
  every particle whatever its orientation, so the encoder no longer has to learn it once per pose.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tomodrgn.io.errors import InputError
from tomodrgn.models.mlp import mlp
from tomodrgn.models.names import ENCODERS as ENCODERS  # re-exported (defined torch-free)
from tomodrgn.models.pooling import Pooling
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import slice_coords


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
            index = index[lat.radius_px[index] <= checked_enc_mask(D, enc_mask)]
        self.register_buffer("mask_index", torch.from_numpy(index.copy()), persistent=False)
        self.encoder_a = mlp(len(index), embed_dim, *arch_a)
        self.pool = Pooling(pooling, embed_dim, n_tilts)
        self.encoder_b = mlp(self.pool.out_dim, 2 * zdim, *arch_b)

    def forward(self, images: torch.Tensor, rotations: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``rotations`` is accepted for a common signature and not used (the poses are not an input here)."""
        b, t = images.shape[:2]
        pixels = images.reshape(b, t, -1).index_select(2, self.mask_index)
        emb = self.encoder_a(pixels)  # (B, T, E)
        out = self.encoder_b(self.pool(emb))
        return out[:, : self.zdim], out[:, self.zdim :]


def checked_enc_mask(D: int, radius: int) -> int:
    """``radius`` (px) of an encoder's input pixels, which must lie between 1 and D/2."""
    if not 1 <= radius <= D // 2:
        raise InputError(f"enc_mask must be between 1 and D/2 = {D // 2} px, got {radius}")
    return radius


def reference_frame_radius(D: int, enc_mask: int | None = None) -> int:
    """Radius (px) of the reference-frame encoder's grid: ``enc_mask`` if given, else min(D/4, 12)."""
    return checked_enc_mask(D, enc_mask if enc_mask is not None else min(D // 4, 12))


class ReferenceFrameEncoder(nn.Module):
    """Images (B, T, D+1, D+1) with their poses (B, T, 3, 3) → μ (B, zdim), log σ² (B, zdim).

    Each tilt's pixels within ``radius`` px (DC excluded) go to the nearest voxel of their volume-frame position
    ``k @ A`` (:func:`tomodrgn.physics.pose.slice_coords`, k in px) on a (2r+1)³ grid; voxel values are the mean of
    the pixels that fell in them (0 where none did). The voxels inside the sphere of radius r are the input of one
    MLP (``nodes x layers``) → 2·zdim. Any number of tilts per particle, in any order.
    """

    def __init__(self, D: int, zdim: int, radius: int, arch: tuple[int, int] = (256, 3)) -> None:
        super().__init__()
        lat = Lattice(D)
        r = lat.radius_px
        pix = np.flatnonzero((r > 0) & (r <= radius))
        self.register_buffer("pixel_index", torch.from_numpy(pix), persistent=False)
        self.register_buffer("pixel_coords", torch.from_numpy(lat.coords[pix] * D), persistent=False)  # px
        side = 2 * radius + 1
        ax = torch.arange(side) - radius
        gz, gy, gx = torch.meshgrid(ax, ax, ax, indexing="ij")
        inside = (gx**2 + gy**2 + gz**2).reshape(-1) <= radius**2
        self.register_buffer("voxel_index", torch.nonzero(inside).squeeze(1), persistent=False)
        self.D, self.zdim, self.radius, self.side = D, zdim, radius, side
        self.net = mlp(int(inside.sum()), 2 * zdim, *arch)

    def grid(self, images: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        """The encoder's input: (B, V) mean pixel value per voxel inside the sphere (V voxels)."""
        b, t = images.shape[:2]
        values = images.reshape(b, t, -1).index_select(2, self.pixel_index).float()  # (B, T, P)
        pos = slice_coords(self.pixel_coords, rotations.float())  # (B, T, P, 3) px, volume frame (x, y, z)
        v = torch.round(pos).long().clamp_(-self.radius, self.radius) + self.radius
        flat = (v[..., 2] * self.side + v[..., 1]) * self.side + v[..., 0]
        n_vox = self.side**3
        flat = (flat + n_vox * torch.arange(b, device=flat.device)[:, None, None]).reshape(-1)
        sums = values.new_zeros(b * n_vox).index_add_(0, flat, values.reshape(-1))
        counts = values.new_zeros(b * n_vox).index_add_(0, flat, values.new_ones(flat.numel()))
        return (sums / counts.clamp(min=1.0)).reshape(b, n_vox).index_select(1, self.voxel_index)

    def forward(self, images: torch.Tensor, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if rotations is None:
            raise ValueError("the reference-frame encoder needs the tilt images' rotations")
        out = self.net(self.grid(images, rotations))
        return out[:, : self.zdim], out[:, self.zdim :]


def phase_flip(images: torch.Tensor, ctf_params: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Images (B, T, D+1, D+1) × sign(CTF): the encoder sees CTF-phase-flipped Hartley images (as the reference does).

    ``ctf_params`` (B, T, 7 | 8) as in the dataset; CTF-premultiplied images (power 2, see
    :func:`tomodrgn.physics.ctf.image_ctf`) are left as they are (CTF² ≥ 0). ``freqs`` ((D+1)², 2) Å⁻¹ of the lattice.
    """
    from tomodrgn.physics.ctf import compute_ctf, flip_sign

    b, t = images.shape[:2]
    p = ctf_params.reshape(b * t, -1)
    ctf = compute_ctf(freqs, p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4], p[:, 5], p[:, 6])
    return images * flip_sign(ctf, p).reshape(images.shape)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """z = μ + ε·exp(½ log σ²); ε ~ N(0, 1) unless given (deterministic noise for reproducible training)."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar)
