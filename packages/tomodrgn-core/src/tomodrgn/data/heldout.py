"""Held-out tilts: which tilt images of each particle are kept out of training (``--val-tilts K``).

The choice is fixed and seeded: in tilt-angle order the particle's n tilts are cut into K equal runs and one position
is taken in each, at the same seeded fractional offset (position ⌊(u + j)·n/K⌋, j = 0…K−1, u ~ U[0, 1) seeded by the
seed and the particle's name, so a particle keeps its choice in any subset of the particles), so the held-out tilts
spread over the tilt range. What is done with them: :mod:`tomodrgn.training.validation`.
"""

from __future__ import annotations

import zlib

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries

SEED_TAG = 0x76616C  # mixed into the held-out choice's seed ("val")


def heldout_split(series: ParticleSeries, k: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training rows, held-out rows) per particle: K held-out images spread over the tilt range (module doc).

    Rows index ``series.images``; both lists keep each particle's file order. Every particle needs more than K tilts.
    """
    if k < 1:
        raise InputError(f"--val-tilts must be ≥ 1 to hold tilts out, got {k}")
    train_rows, held_rows = [], []
    for p, rows in enumerate(series.image_indices):
        n = len(rows)
        if n <= k:
            raise InputError(
                f"{series.star_path}: particle {series.particle_names[p]!r} has {n} tilt images; --val-tilts {k} "
                "must leave at least one for training"
            )
        u = np.random.default_rng([seed, SEED_TAG, zlib.crc32(series.particle_names[p].encode())]).random()
        order = np.argsort(series.tilt[rows], kind="stable")
        held = np.zeros(n, dtype=bool)
        held[order[np.floor((u + np.arange(k)) * n / k).astype(np.int64)]] = True
        train_rows.append(rows[~held])
        held_rows.append(rows[held])
    return train_rows, held_rows
