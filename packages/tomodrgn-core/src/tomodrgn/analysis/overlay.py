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


# tab20 with its 10 saturated colours first and their light partners after, so clusters 0..9 get 10 distinct hues
# and no two consecutive labels are a dark/light pair of the same hue
TAB20_DISTINCT = (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)


def cluster_colors(labels: np.ndarray | None, n: int | None = None, cmap: str = "tab20") -> np.ndarray:
    """RGBA colours (n, 4) for cluster ``labels`` (a qualitative colormap, label modulo its size); white if None.

    With ``tab20`` (default) the colours follow :data:`TAB20_DISTINCT`: up to 10 clusters get 10 different hues,
    up to 20 clusters 20 different colours.
    """
    if labels is None:
        return np.ones((0 if n is None else n, 4))
    from matplotlib import colormaps  # matplotlib is a core dependency; imported lazily (slow import)

    cm = colormaps[cmap]
    idx = np.asarray(labels, dtype=np.int64) % cm.N
    if cmap == "tab20":
        idx = np.asarray(TAB20_DISTINCT)[idx]
    return np.asarray(cm(idx), dtype=float)


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


def volume_translate(center: np.ndarray, volume_shape: Sequence[int], volume_pixel_size: float) -> np.ndarray:
    """Translate (Å, z, y, x) that puts a volume's rotation origin (voxel D/2) at ``center`` (Å, z, y, x).

    World coordinates are Å: a layer with scale ``volume_pixel_size`` and this translate is centred on ``center``.
    """
    half = np.asarray([s // 2 for s in volume_shape], dtype=np.float64)
    return np.asarray(center, dtype=np.float64) - float(volume_pixel_size) * half


def volume_beside(position: np.ndarray, volume_extent: float, index: int = 0, gap: float = 0.25) -> np.ndarray:
    """Centre (Å, z, y, x) for a decoded volume shown next to a particle at ``position`` (Å, z, y, x).

    The volume (edge ``volume_extent`` Å) sits beside the particle along +x, in the particle's z slice, so a 2-D view
    of that slice shows the particle and its volume side by side; ``index`` k puts the k-th of several volumes one
    more volume width further (a row of volumes).
    """
    step = float(volume_extent) * (1.0 + gap)
    return np.asarray(position, dtype=np.float64) + np.array([0.0, 0.0, step * (index + 1)])


def points_of_particles(point_particles: np.ndarray, particles: np.ndarray) -> np.ndarray:
    """Indices of the points (rows of ``point_particles``, the particle index of each point) showing ``particles``."""
    return np.flatnonzero(np.isin(np.asarray(point_particles), np.asarray(particles, dtype=np.int64))).astype(np.int64)


def particles_of_points(point_particles: np.ndarray, points: Any) -> np.ndarray:
    """Sorted unique particle indices shown by the points ``points`` (indices into ``point_particles``)."""
    pts = np.asarray(sorted(points), dtype=np.int64)
    return np.unique(np.asarray(point_particles, dtype=np.int64)[pts]) if len(pts) else np.empty(0, np.int64)


COLOR_QUANTITIES = ("cluster", "PC1", "PC2", "tomogram", "defocus")


def particle_quantity(
    series: Any, name: str, z: np.ndarray | None = None, labels: np.ndarray | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Per-particle values to colour a scatter or points by: ``(values (n,), category names or None)``.

    ``cluster`` (``labels``), ``PC1``/``PC2`` (PCA of ``z``), ``tomogram`` (index into the sorted names),
    ``defocus`` (mean defocus U of the particle's images, Å). Categorical quantities return their category names.
    Raises :class:`InputError` if the data for ``name`` is missing.
    """
    from tomodrgn.analysis.latent import pca

    star = getattr(series, "star_path", "<particles>")
    if name == "cluster":
        if labels is None:
            raise InputError("colour by cluster: no cluster labels (load a run folder)")
        labels = np.asarray(labels, dtype=np.int64)
        return labels, [f"cluster {k}" for k in range(int(labels.max()) + 1)]
    if name in ("PC1", "PC2"):
        if z is None:
            raise InputError(f"colour by {name}: no latent z (load a VAE run folder)")
        coords = pca(z, 2).coords
        k = int(name[-1]) - 1
        return (coords[:, k] if coords.shape[1] > k else np.zeros(len(coords))), None
    if name == "tomogram":
        names = _tomogram_names(series)
        if names is None:
            raise InputError(f"{star}: no tomogram names to colour by")
        cats = sorted(set(names.tolist()))
        return np.searchsorted(np.asarray(cats), names).astype(np.int64), cats
    if name == "defocus":
        return np.array([float(np.mean(series.defocus_u[r])) for r in series.image_indices]), None
    raise InputError(f"unknown quantity {name!r} to colour by (choose from {', '.join(COLOR_QUANTITIES)})")
