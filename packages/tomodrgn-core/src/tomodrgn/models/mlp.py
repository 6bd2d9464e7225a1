"""Multi-layer perceptrons configured as ``nodes x layers`` (e.g. ``"256x3"``)."""

from __future__ import annotations

import torch
from torch import nn

from tomodrgn.models.names import parse_arch as parse_arch  # re-exported (defined torch-free)


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
