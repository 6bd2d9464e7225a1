"""Multi-layer perceptrons configured as ``nodes x layers`` (e.g. ``"256x3"``)."""

from __future__ import annotations

import torch
from torch import nn


def parse_arch(spec: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"256x3"`` (or ``(256, 3)``) → (nodes, layers). ``layers`` counts hidden layers (≥ 1)."""
    if isinstance(spec, str):
        parts = spec.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"architecture must look like '256x3' (nodes x layers), got {spec!r}")
        nodes, layers = int(parts[0]), int(parts[1])
    else:
        nodes, layers = (int(v) for v in spec)
    if nodes < 1 or layers < 1:
        raise ValueError(f"architecture needs nodes ≥ 1 and layers ≥ 1, got {spec!r}")
    return nodes, layers


class ResidLinear(nn.Module):
    """``x + W x + b`` (a residual linear layer of constant width)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).add_(x)


def mlp(in_dim: int, out_dim: int, nodes: int, layers: int) -> nn.Sequential:
    """Linear(in→nodes), ReLU, (layers−1) × [residual Linear(nodes→nodes), ReLU], Linear(nodes→out).

    The layout of cryoDRGN's ``ResidLinearMLP``.
    """
    mods: list[nn.Module] = [nn.Linear(in_dim, nodes), nn.ReLU(inplace=True)]
    for _ in range(layers - 1):
        mods += [ResidLinear(nodes), nn.ReLU(inplace=True)]
    mods.append(nn.Linear(nodes, out_dim))
    return nn.Sequential(*mods)
