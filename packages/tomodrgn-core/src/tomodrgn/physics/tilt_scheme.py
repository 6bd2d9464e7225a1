"""Tilt-series acquisition schemes (for simulation)."""

from __future__ import annotations

import numpy as np


def dose_symmetric(max_tilt: float = 60.0, step: float = 3.0, group: int = 2) -> np.ndarray:
    """Hagen dose-symmetric scheme, tilt angles in degrees in acquisition order.

    0°, then groups of ``group`` steps alternating sides: +3, +6, −3, −6, +9, +12, … up to ±max_tilt (41 tilts by
    default).
    """
    n_side = int(round(max_tilt / step))
    pos = [step * i for i in range(1, n_side + 1)]
    order = [0.0]
    for g in range(0, n_side, group):
        order += pos[g : g + group]
        order += [-p for p in pos[g : g + group]]
    return np.asarray(order, dtype=np.float64)
