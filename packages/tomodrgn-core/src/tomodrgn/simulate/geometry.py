"""Acquisition geometry of the simulation: tilt schemes and doses, per-tilt poses, dropped tilts, placement."""

from __future__ import annotations

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.physics.pose import tilt_about_y
from tomodrgn.physics.tilt_scheme import dose_symmetric


def tilt_series(n_tilts: int, max_tilt: float, tilt_step: float, dose_per_tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """Tilt angles (°) and cumulative doses (e⁻/Å²) in acquisition order.

    Dose-symmetric scheme (:func:`tomodrgn.physics.tilt_scheme.dose_symmetric`); tilt i (0-based acquisition order)
    has cumulative dose (i + 1)·dose_per_tilt. ``n_tilts`` smaller than the scheme keeps its first n_tilts.
    """
    angles = dose_symmetric(max_tilt, tilt_step)
    if n_tilts < 1 or n_tilts > len(angles):
        raise InputError(
            f"n_tilts={n_tilts} is not possible with max_tilt={max_tilt}° and tilt_step={tilt_step}° "
            f"(the dose-symmetric scheme has {len(angles)} tilts)"
        )
    angles = angles[:n_tilts]
    return angles, (np.arange(n_tilts) + 1.0) * dose_per_tilt


def tilt_rotations(particle_rotations: np.ndarray, tilt_deg: np.ndarray) -> np.ndarray:
    """Per-tilt poses R_tilt = tilt_about_y(θ) @ R_particle: (n, T, 3, 3) from (n, 3, 3) and (T,) degrees.

    The stage tilt rotates the specimen about the image y axis; at θ = 0 the pose is the particle's own.
    """
    return tilt_about_y(np.asarray(tilt_deg, dtype=np.float64))[None] @ particle_rotations[:, None]


def kept_tilts(n_particles: int, n_tilts: int, drop_tilts: int, rng: np.random.Generator) -> np.ndarray:
    """Bool (n, T): each particle loses a uniform random number 0…drop_tilts of its tilts (never the first, 0°)."""
    keep = np.ones((n_particles, n_tilts), dtype=bool)
    if drop_tilts <= 0:
        return keep
    if drop_tilts >= n_tilts:
        raise InputError(f"drop_tilts={drop_tilts} must be smaller than the number of tilts ({n_tilts})")
    n_drop = rng.integers(0, drop_tilts + 1, size=n_particles)
    for i, k in enumerate(n_drop):
        if k:
            keep[i, 1 + rng.choice(n_tilts - 1, size=k, replace=False)] = False
    return keep


def place_particles(
    n: int, shape_zyx: tuple[int, int, int], box_size: int, rng: np.random.Generator, min_distance: float | None = None
) -> np.ndarray:
    """Random non-overlapping particle centres (n, 3) as (x, y, z) pixels inside a tomogram of shape (Z, Y, X).

    Whole-pixel centres keep a margin of D/2 from every face (the whole box is inside), at least ``min_distance`` px
    apart (default 0.75·D, more than the phantom's diameter ≈ 0.7·D).
    """
    d = box_size
    min_distance = 0.75 * d if min_distance is None else min_distance
    lo = np.full(3, d / 2)
    hi = np.array(shape_zyx[::-1], dtype=np.float64) - d / 2
    if np.any(hi < lo):
        raise InputError(f"tomogram shape {shape_zyx} (Z, Y, X) is too small for box size {d}")
    pos = np.empty((0, 3))
    for _ in range(n):
        for _try in range(5000):
            p = rng.uniform(lo, hi)
            if len(pos) == 0 or np.min(np.linalg.norm(pos - p, axis=1)) >= min_distance:
                pos = np.vstack([pos, p])
                break
        else:
            raise InputError(
                f"cannot place {n} non-overlapping particles of box {d} in a tomogram of shape {shape_zyx}; "
                "use more tomograms (n_tomograms) or a larger tomogram_shape"
            )
    return np.round(pos)
