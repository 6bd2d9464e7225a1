"""Spatial context of particles in their tomograms: positions, poses, nearest neighbours per cluster.

Frames (defined once here, following :mod:`tomodrgn.physics.pose`): a particle's RELION matrix ``A`` maps its
reference (volume) frame into the tomogram frame, ``x_tomo = A @ x_ref`` (offsets from the particle centre).
So a tomogram-frame direction ``d`` (e.g. to the nearest neighbour) is, in the particle's reference frame,
``d_ref = A.T @ d``. This makes neighbour directions comparable across particles: a helical or lattice
neighbour appears at the same ``d_ref`` for every particle.

Tilt-image poses in a STAR file combine the particle pose with the stage tilt: ``A_image = T(tilt) @ A`` with
``T = tilt_about_y`` (a passive rotation about the image y axis, as the simulator and RELION use). The particle
pose is taken from the image nearest 0° tilt (see :func:`particle_poses`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from tomodrgn.io.errors import InputError


def lowest_tilt_rotations(rotation: np.ndarray, tilt: np.ndarray, image_indices: Sequence[np.ndarray]) -> np.ndarray:
    """Pose per particle (n_particles, 3, 3): the rotation of its image with the smallest ``|tilt|`` (degrees)."""
    out = np.empty((len(image_indices), 3, 3))
    for i, rows in enumerate(image_indices):
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            raise InputError(f"particle {i} has no tilt images")
        out[i] = rotation[rows[np.argmin(np.abs(tilt[rows]))]]
    return out


def particle_poses(series) -> np.ndarray:
    """Pose A (n_particles, 3, 3) of each particle of a ``ParticleSeries`` in the tomogram frame.

    The per-particle pose when the reader stored one (``series.particle_rotation``), else the pose of the particle's
    lowest-|tilt| image (the 0° image of a dose-symmetric series, whose image frame is the tomogram frame; Warp
    STARs store |tilt| only, so a non-zero lowest tilt is not undone).
    """
    per_particle = getattr(series, "particle_rotation", None)
    if per_particle is not None:
        return np.asarray(per_particle, dtype=np.float64).reshape(-1, 3, 3)
    return lowest_tilt_rotations(np.asarray(series.rotation), np.asarray(series.tilt), series.image_indices)


def particle_positions(series) -> tuple[np.ndarray, np.ndarray]:
    """(tomogram name per particle (n,) object, position (n, 3) Å (x, y, z)) from a ``ParticleSeries``.

    Raises ``ValueError`` naming the STAR file when it has no coordinates.
    """
    if series.position is None:
        raise InputError(
            f"{series.star_path}: no particle coordinates (_rlnCoordinateX/Y/Z or _rlnCenteredCoordinateX/Y/ZAngst)"
        )
    tomos = series.tomogram if series.tomogram is not None else ["tomogram"] * series.n_particles
    return np.asarray(tomos, dtype=object), np.asarray(series.position, dtype=np.float64)


@dataclass
class Neighbours:
    """Nearest neighbour of each particle within its tomogram (optionally within a particle subset).

    ``index`` (n,) the neighbour's particle index (−1 if alone); ``distance`` (n,) Å (inf if alone);
    ``direction_tomo`` (n, 3) unit vector to the neighbour in the tomogram frame; ``direction_ref`` (n, 3) the same
    in the particle's reference frame (``A.T @ d``; NaN if no poses were given or alone).
    """

    index: np.ndarray
    distance: np.ndarray
    direction_tomo: np.ndarray
    direction_ref: np.ndarray


def nearest_neighbours(
    positions: np.ndarray,
    tomograms: np.ndarray | None = None,
    rotations: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> Neighbours:
    """Nearest neighbour of each particle among particles of the same tomogram (and same label, if given).

    ``positions`` (n, 3) Å; ``tomograms`` (n,) names (default: all in one); ``rotations`` (n, 3, 3) RELION
    matrices (reference → tomogram frame); ``labels`` (n,) restricts neighbours to the same cluster.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    tomos = np.zeros(n, dtype=int) if tomograms is None else np.asarray(tomograms, dtype=object)
    labs = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    index = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.inf)
    dirs = np.full((n, 3), np.nan)
    groups = pd.DataFrame({"t": tomos, "l": labs}).groupby(["t", "l"], sort=False).indices
    for members in groups.values():
        if len(members) < 2:
            continue
        p = pos[members]
        d, j = cKDTree(p).query(p, k=2)  # self and the nearest other (order may swap for coincident points)
        self_first = j[:, 0] == np.arange(len(members))
        j = np.where(self_first, j[:, 1], j[:, 0])
        index[members] = members[j]
        dist[members] = np.where(self_first, d[:, 1], d[:, 0])
        vec = p[j] - p
        dirs[members] = vec / np.maximum(dist[members], 1e-12)[:, None]
    ref = np.full((n, 3), np.nan)
    if rotations is not None:
        rot = np.asarray(rotations, dtype=np.float64)
        ref = np.einsum("nji,nj->ni", rot, dirs)  # A.T @ d
    return Neighbours(index, dist, dirs, ref)


def neighbour_summary(neighbours: Neighbours, labels: np.ndarray) -> pd.DataFrame:
    """Per-cluster table: particle count, nearest-neighbour distance (Å) median/mean/std, and the mean
    reference-frame direction (x, y, z) with its resultant length (1 = all neighbours in the same direction)."""
    labels = np.asarray(labels)
    rows = []
    for lab in np.unique(labels):
        m = labels == lab
        d = neighbours.distance[m]
        d = d[np.isfinite(d)]
        dr = neighbours.direction_ref[m]
        dr = dr[np.all(np.isfinite(dr), axis=1)]
        mean_dir = dr.mean(0) if len(dr) else np.full(3, np.nan)
        rows.append(
            {
                "cluster": lab.item() if hasattr(lab, "item") else lab,
                "n_particles": int(m.sum()),
                "n_with_neighbour": int(len(d)),
                "nn_distance_median_A": float(np.median(d)) if len(d) else np.nan,
                "nn_distance_mean_A": float(d.mean()) if len(d) else np.nan,
                "nn_distance_std_A": float(d.std()) if len(d) else np.nan,
                "dir_ref_x": mean_dir[0],
                "dir_ref_y": mean_dir[1],
                "dir_ref_z": mean_dir[2],
                "dir_ref_resultant": float(np.linalg.norm(mean_dir)) if len(dr) else np.nan,
            }
        )
    return pd.DataFrame(rows)
