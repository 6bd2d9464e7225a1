"""The hand of a map: its mirror image, the one definition used by every ``--flip-hand``.

A map is D³ [z, y, x] with the rotation origin at voxel D/2 (``docs/architecture.md``, "Hand"). Its mirror image is
z → −z about that voxel: voxel i goes to (D − i) mod D, so voxel D/2 stays where it is and the map stays in
register with the particles' positions. ``np.flip`` alone (i → D − 1 − i) would also move it by one voxel.
"""

from __future__ import annotations

import numpy as np
import torch


def flip_hand(vol: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The mirror image of a map (..., D, D, D) [z, y, x]: z → −z about voxel D/2 (the last three axes are z, y, x)."""
    if isinstance(vol, torch.Tensor):
        return torch.roll(torch.flip(vol, dims=(-3,)), 1, dims=-3)
    return np.roll(np.flip(np.asarray(vol), axis=-3), 1, axis=-3)
