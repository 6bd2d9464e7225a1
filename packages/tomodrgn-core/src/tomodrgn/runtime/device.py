"""The device a command runs on: ``auto``, ``cpu``, ``mps`` or ``cuda[:i]`` → a :class:`torch.device`."""

from __future__ import annotations

import torch


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """ "auto" → cuda:local_rank when CUDA is available, else cpu; anything else as given."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev
