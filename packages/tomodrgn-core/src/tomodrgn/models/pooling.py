"""Pooling of the per-tilt embeddings of a particle (B, T, E) into one vector per particle.

``concatenate`` keeps tilt order (needs a fixed T); ``max``, ``mean``, ``median`` and ``set`` (attention with a
learned query, as in Set Transformer's PMA) are invariant to permutations of the tilts.
"""

from __future__ import annotations

import torch
from torch import nn

from tomodrgn.io.errors import InputError
from tomodrgn.models.names import POOLING_MODES


class SetPooling(nn.Module):
    """Permutation-invariant attention pooling: a learned query attends over the T embeddings (+ MLP)."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        while dim % heads:
            heads -= 1
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(x.shape[0], -1, -1)
        out, _ = self.attn(q, x, x, need_weights=False)
        out = self.norm(out[:, 0] + q[:, 0])
        return out + self.ff(out)


class Pooling(nn.Module):
    """Pool (B, T, E) → (B, out_dim); ``out_dim`` is T·E for ``concatenate``, E otherwise."""

    def __init__(self, mode: str, dim: int, n_tilts: int) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise InputError(f"pooling must be one of {POOLING_MODES}, got {mode!r}")
        self.mode, self.dim, self.n_tilts = mode, dim, n_tilts
        self.set_pool = SetPooling(dim) if mode == "set" else None

    @property
    def out_dim(self) -> int:
        return self.dim * self.n_tilts if self.mode == "concatenate" else self.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "concatenate":
            if x.shape[1] != self.n_tilts:
                raise InputError(
                    f"concatenate pooling was built for {self.n_tilts} tilts per particle, got {x.shape[1]}"
                )
            return x.reshape(x.shape[0], -1)
        if self.mode == "max":
            return x.amax(dim=1)
        if self.mode == "mean":
            return x.mean(dim=1)
        if self.mode == "median":
            return x.median(dim=1).values
        return self.set_pool(x)
