"""The tomoDRGN model: tilt-series encoder (VAE mode) + Hartley decoder; ``zdim = 0`` is the homogeneous mode."""

from __future__ import annotations

import torch
from torch import nn
from torch.profiler import record_function

from tomodrgn.io.errors import InputError
from tomodrgn.models.decoder import HartleyDecoder
from tomodrgn.models.encoder import (
    ENCODERS,
    ReferenceFrameEncoder,
    TiltSeriesEncoder,
    reference_frame_radius,
    reparameterize,
)


class TomoDRGN(nn.Module):
    """Encoder (None when homogeneous) and decoder.

    :meth:`forward` takes the batch images (B, T, D+1, D+1), the kept half-lattice points of all B·T images
    (coords (K, 3), optional features (K, 2F), ``point_particle`` (K,) particle of each point) and the images'
    rotations (B, T, 3, 3) (used by the reference-frame encoder), and returns (h(k) (K,), h(−k) (K,), μ, log σ²)
    (μ, log σ² None when homogeneous).
    """

    def __init__(
        self,
        D: int,
        zdim: int,
        n_tilts: int,
        enc_arch_a: tuple[int, int] = (256, 3),
        enc_arch_b: tuple[int, int] = (256, 3),
        embed_dim: int = 128,
        pooling: str = "concatenate",
        dec_arch: tuple[int, int] = (256, 3),
        feat_sigma: float = 0.5,
        n_features: int | None = None,
        enc_mask: int | None = None,
        encoder: str = "reference-frame",
    ) -> None:
        super().__init__()
        self.D, self.zdim = D, zdim
        self.encoder: TiltSeriesEncoder | ReferenceFrameEncoder | None = None
        if zdim > 0 and encoder == "per-tilt":
            self.encoder = TiltSeriesEncoder(D, zdim, n_tilts, enc_arch_a, enc_arch_b, embed_dim, pooling, enc_mask)
        elif zdim > 0 and encoder == "reference-frame":
            self.encoder = ReferenceFrameEncoder(D, zdim, reference_frame_radius(D, enc_mask), enc_arch_a)
        elif zdim > 0:
            raise InputError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.decoder = HartleyDecoder(D, zdim, dec_arch, feat_sigma, n_features)

    def encode(self, images: torch.Tensor, rotations: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²) of images (B, T, D+1, D+1); ``rotations`` (B, T, 3, 3) are needed by the reference-frame
        encoder."""
        if self.encoder is None:
            raise InputError("a homogeneous model (zdim = 0) has no encoder")
        return self.encoder(images, rotations)

    def forward(
        self,
        images: torch.Tensor | None,
        coords: torch.Tensor,
        features: torch.Tensor | None,
        point_particle: torch.Tensor,
        eps: torch.Tensor | None = None,
        rotations: torch.Tensor | None = None,
    ):
        mu = logvar = z = None
        if self.encoder is not None:
            with record_function("tomodrgn.encoder"):
                mu, logvar = self.encoder(images, rotations)
                z = reparameterize(mu, logvar, eps)
        with record_function("tomodrgn.decoder"):
            h_pos, h_neg = self.decoder(coords, features, z, point_particle if z is not None else None)
        return h_pos, h_neg, mu, logvar
