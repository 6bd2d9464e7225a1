"""Particles drawn on their tomogram: positions, orientation vectors, cluster colours, volumes placed at their poses.

Conventions (see :mod:`tomodrgn.physics.pose`):

* Positions are returned in **tomogram voxels**, in napari/numpy axis order **(z, y, x)**: the particle position
  (Å, from the STAR file) divided by the tomogram's voxel size (Å).
* Pose: the RELION matrix ``A = euler_to_matrix(rot, tilt, psi)`` maps reference coordinates into the particle
  frame, ``x_tomo = A @ x_ref`` (relative to the particle centre; the tomogram frame is the untilted image frame).
  The **particle pose** is the per-particle pose of the STAR file when the series stores one
  (``series.particle_rotation``), otherwise the pose of the particle's tilt image with the lowest ``|tilt|``
  (the 0° image of a dose-symmetric series, whose image frame is the tomogram frame).
* **Direction** of a particle: its reference z axis expressed in the tomogram frame, ``A @ [0, 0, 1]`` = the third
  *column* of ``A`` (equivalently ``Mᵀ e_z`` with ``M = Aᵀ`` the active "rotate particle onto reference" matrix).
  Returned as a unit vector in (z, y, x) order.
* Volumes are indexed [z, y, x] with the rotation origin at voxel (D/2, D/2, D/2), as everywhere in the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tomodrgn.analysis.spatial import particle_poses
from tomodrgn.io.errors import InputError


@dataclass
class ParticleOverlay:
    """Per-particle drawing data for one tomogram (all arrays have one row per kept particle)."""

    positions: np.ndarray  # (n, 3) float64 tomogram voxels, (z, y, x)
    directions: np.ndarray  # (n, 3) float64 unit reference z axis in the tomogram frame, (z, y, x)
    rotations: np.ndarray  # (n, 3, 3) float64 RELION matrices A (x_tomo = A @ x_ref, xyz order)
    particle_indices: np.ndarray  # (n,) int64 indices into the series' particles
    labels: np.ndarray | None  # (n,) int64 cluster labels, or None
    colors: np.ndarray  # (n, 4) float RGBA in [0, 1]
    pixel_size: float  # Å per tomogram voxel
    tomogram: str | None  # tomogram name the particles were restricted to (None: all)

    def vectors(self, length: float = 10.0) -> np.ndarray:
        """napari Vectors data (n, 2, 3): start = position, projection = ``length`` voxels along the direction."""
        return np.stack([self.positions, self.directions * float(length)], axis=1)


def reference_z_axis(rotations: np.ndarray) -> np.ndarray:
    """Unit reference z axis of each pose in the tomogram frame, (n, 3) in **(z, y, x)** order: ``(A @ e_z)[::-1]``."""
    r = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    d = r[:, :, 2]
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return d[:, ::-1].copy()


def cluster_colors(labels: np.ndarray | None, n: int | None = None, cmap: str = "tab20") -> np.ndarray:
    """RGBA colours (n, 4) for cluster ``labels`` (a qualitative colormap, label modulo its size); white if None."""
    if labels is None:
        return np.ones((0 if n is None else n, 4))
    from matplotlib import colormaps  # matplotlib is a core dependency; imported lazily (slow import)

    cm = colormaps[cmap]
    return np.asarray(cm(np.asarray(labels, dtype=np.int64) % cm.N), dtype=float)


def particle_overlay(
    series: Any,
    labels: np.ndarray | None = None,
    tomogram: str | None = None,
    tomogram_pixel_size: float | None = None,
) -> ParticleOverlay:
    """Positions, orientation vectors and cluster colours of the particles of ``series`` (one tomogram or all).

    ``series`` is a :class:`~tomodrgn.io.particles.ParticleSeries` with particle positions (Å) in the tomogram;
    ``labels`` (n_particles,) cluster labels in the series' particle order; ``tomogram`` restricts to particles of
    that tomogram name; ``tomogram_pixel_size`` (Å/voxel) converts Å to tomogram voxels (default: the series'
    pixel size). Raises :class:`InputError` naming the STAR file if it has no positions or the tomogram is unknown.
    """
    star = getattr(series, "star_path", "<particles>")
    position = getattr(series, "position", None)
    if position is None:
        raise InputError(f"{star}: no particle positions (_rlnCoordinateX/Y/Z or _rlnCenteredCoordinateX/Y/ZAngst)")
    position = np.asarray(position, dtype=np.float64)
    n = len(series.particle_names)
    if position.shape != (n, 3):
        raise InputError(f"{star}: positions have shape {position.shape}, expected ({n}, 3)")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (n,):
            raise InputError(f"{star}: {len(labels)} cluster labels given for {n} particles")
    keep = np.arange(n)
    if tomogram is not None:
        names = _tomogram_names(series)
        if names is None:
            raise InputError(f"{star}: no tomogram names, cannot select tomogram {tomogram!r}")
        keep = np.flatnonzero(names == tomogram)
        if len(keep) == 0:
            known = ", ".join(sorted(set(names.tolist()))[:10])
            raise InputError(f"{star}: no particle in tomogram {tomogram!r} (tomograms: {known})")
    ps = float(series.pixel_size if tomogram_pixel_size is None else tomogram_pixel_size)
    if not ps > 0:
        raise InputError(f"{star}: tomogram pixel size must be > 0 Å, got {ps}")
    rot = particle_poses(series)[keep]
    lab = None if labels is None else labels[keep]
    colors = cluster_colors(lab, len(keep)) if lab is not None else np.ones((len(keep), 4))
    return ParticleOverlay(
        positions=position[keep][:, ::-1] / ps,
        directions=reference_z_axis(rot),
        rotations=rot,
        particle_indices=keep.astype(np.int64),
        labels=lab,
        colors=colors,
        pixel_size=ps,
        tomogram=tomogram,
    )


def _tomogram_names(series: Any) -> np.ndarray | None:
    for attr in ("tomogram", "tomogram_names", "tomo_name"):
        names = getattr(series, attr, None)
        if names is not None:
            return np.asarray(names, dtype=object).astype(str)
    return None


def place_volumes(
    volumes: Sequence[np.ndarray] | np.ndarray,
    positions: np.ndarray,
    rotations: np.ndarray,
    shape: tuple[int, int, int],
    volume_pixel_size: float,
    tomogram_pixel_size: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Paste each volume into a tomogram-shaped array at its position and pose (summed where they overlap).

    ``volumes`` (n, D, D, D) [z, y, x] with the origin at voxel D/2 and voxel size ``volume_pixel_size`` Å;
    ``positions`` (n, 3) tomogram voxels (z, y, x); ``rotations`` (n, 3, 3) RELION A (``x_tomo = A @ x_ref``);
    ``shape`` the tomogram shape (z, y, x) with voxel size ``tomogram_pixel_size`` Å. Trilinear interpolation.
    Returns ``out`` (float32, created if None).
    """
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    scale = tomogram_pixel_size / volume_pixel_size  # volume voxels per tomogram voxel
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    for vol, pos, a in zip(volumes, positions, rotations):
        vol = np.ascontiguousarray(vol, dtype=np.float32)
        d = vol.shape[0]
        half = int(np.ceil(np.sqrt(3) * d / 2 / scale)) + 1  # bounding radius in tomogram voxels
        lo = np.maximum(np.floor(pos).astype(int) - half, 0)
        hi = np.minimum(np.floor(pos).astype(int) + half + 1, np.asarray(shape))
        if np.any(hi <= lo):
            continue
        grids = np.meshgrid(*(np.arange(lo[k], hi[k]) for k in range(3)), indexing="ij")
        off_zyx = np.stack([g.ravel() - pos[k] for k, g in enumerate(grids)], axis=0) * scale
        ref_xyz = a.T @ off_zyx[::-1]  # x_ref = Aᵀ x_tomo, in volume voxels
        grid = torch.from_numpy((ref_xyz + d // 2) * (2.0 / (d - 1)) - 1.0).T.to(torch.float32)  # (N, 3) x, y, z
        vals = F.grid_sample(
            torch.from_numpy(vol)[None, None], grid[None, None, None], mode="bilinear", align_corners=True
        ).numpy()
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += vals.reshape(grids[0].shape).astype(out.dtype)
    return out
