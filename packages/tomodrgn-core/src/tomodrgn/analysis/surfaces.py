"""Iso-surfaces of decoded volumes, alone or placed at every particle's pose in its tomogram (one mesh per cluster).

Conventions (see :mod:`tomodrgn.analysis.overlay` and :mod:`tomodrgn.physics.pose`):

* Volumes are indexed [z, y, x] with the rotation origin at voxel D/2; a surface's vertices are returned in
  **(z, y, x)** order.
* :func:`iso_surface` gives vertices in Å relative to the rotation origin (the reference frame of the volume).
* :func:`populated_surfaces` places each particle's surface with its RELION pose ``A`` (``x_tomo = A @ x_ref``, xyz)
  at its position, and returns vertices in **tomogram voxels** (z, y, x), so a napari ``Surface`` layer with the
  tomogram layer's scale and translate lines up with the tomogram and its Points overlay.

A populated tomogram is meshes, never a tomogram-sized array: memory grows with the number of triangles, not with
the tomogram. Volumes are consumed one at a time from an iterable (decode them in chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from tomodrgn.io.errors import InputError

#: Å³ per Da of protein (density 1.35 g/cm³ → 0.81 Da/Å³): the volume enclosing a mass of M kDa is 1230·M Å³
PROTEIN_VOLUME_A3_PER_DA = 1.23
#: default threshold without a mass: mean + this many standard deviations of the box
DEFAULT_SIGMA = 2.0


@dataclass
class Mesh:
    """A triangle mesh: ``vertices`` (n, 3) float32 in (z, y, x), ``faces`` (m, 3) int32 vertex indices."""

    vertices: np.ndarray
    faces: np.ndarray

    @property
    def n_vertices(self) -> int:
        return int(len(self.vertices))


@dataclass
class ClusterSurface:
    """The placed surfaces of one cluster's particles, merged into one mesh, with its colour."""

    label: int | None  # cluster label (None: no labels)
    mesh: Mesh  # vertices in tomogram voxels (z, y, x)
    color: np.ndarray  # (4,) RGBA in [0, 1]
    particle_indices: np.ndarray  # (k,) int64 indices into the series' particles
    vertex_particle: np.ndarray  # (n_vertices,) int32: which of particle_indices each vertex belongs to


def sigma_level(volume: np.ndarray, sigma: float = DEFAULT_SIGMA) -> float:
    """Mean + ``sigma`` standard deviations of ``volume`` (the level :func:`surface_threshold` then keeps inside the
    value range)."""
    v = np.asarray(volume, dtype=np.float32)
    return float(v.mean() + sigma * v.std())


def surface_threshold(
    volume: np.ndarray, pixel_size: float | None = None, mass_kda: float | None = None, sigma: float = DEFAULT_SIGMA
) -> float:
    """Default iso-surface threshold of a volume.

    With ``mass_kda`` (and ``pixel_size`` Å/voxel): the level whose enclosed volume is the volume of that mass of
    protein (:data:`PROTEIN_VOLUME_A3_PER_DA`), as ChimeraX users set it. Otherwise mean + ``sigma`` standard
    deviations of the box. Always strictly inside the volume's value range (so a surface exists).
    """
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        raise InputError(f"volume is constant ({lo:g}): it has no surface")
    if mass_kda is not None:
        if not (pixel_size and pixel_size > 0 and mass_kda > 0):
            raise InputError(f"a mass of {mass_kda} kDa needs a pixel size > 0 Å (got {pixel_size})")
        n_vox = mass_kda * 1000.0 * PROTEIN_VOLUME_A3_PER_DA / float(pixel_size) ** 3
        frac = min(max(n_vox / v.size, 1.0 / v.size), 1.0 - 1.0 / v.size)
        level = float(np.quantile(v, 1.0 - frac))
    else:
        level = sigma_level(v, sigma)
    eps = 1e-6 * (hi - lo)
    return float(min(max(level, lo + eps), hi - eps))


def iso_surface(volume: np.ndarray, threshold: float, pixel_size: float = 1.0, step: int = 1) -> Mesh:
    """Marching-cubes surface (scikit-image) of ``volume`` [z, y, x] at ``threshold``.

    Vertices in Å (``pixel_size`` Å/voxel), (z, y, x), relative to the rotation origin voxel D/2; ``step`` > 1 makes
    a coarser mesh (fewer triangles). A threshold outside the value range gives an empty mesh.
    """
    from skimage.measure import marching_cubes

    v = np.asarray(volume, dtype=np.float32)
    if not float(v.min()) < threshold < float(v.max()):
        return Mesh(np.empty((0, 3), np.float32), np.empty((0, 3), np.int32))
    verts, faces, _normals, _values = marching_cubes(v, level=float(threshold), step_size=int(step))
    origin = np.asarray([s // 2 for s in v.shape], dtype=np.float32)
    return Mesh(((verts - origin) * float(pixel_size)).astype(np.float32), faces.astype(np.int32))


def posed_vertices(
    vertices_ref_zyx: np.ndarray, rotation: np.ndarray, position_zyx: np.ndarray, tomogram_pixel_size: float
) -> np.ndarray:
    """Vertices (Å, z y x, reference frame) placed at a particle: ``A @ x_ref`` (xyz) + position; tomogram voxels."""
    xyz = np.asarray(vertices_ref_zyx, dtype=np.float64)[:, ::-1]
    tomo_xyz = xyz @ np.asarray(rotation, dtype=np.float64).T
    return (tomo_xyz[:, ::-1] / float(tomogram_pixel_size) + np.asarray(position_zyx, dtype=np.float64)).astype(
        np.float32
    )


def populated_surfaces(
    volumes: Iterable[np.ndarray],
    positions: np.ndarray,
    rotations: np.ndarray,
    volume_pixel_size: float,
    tomogram_pixel_size: float,
    labels: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    particle_indices: np.ndarray | None = None,
    threshold: float | None = None,
    step: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[ClusterSurface]:
    """Each particle's own volume as an iso-surface at its pose in the tomogram; one merged mesh per cluster.

    ``volumes`` yields one (D, D, D) volume per particle, in the order of ``positions`` (n, 3) tomogram voxels
    (z, y, x) and ``rotations`` (n, 3, 3) RELION ``A`` (as in :class:`~tomodrgn.analysis.overlay.ParticleOverlay`);
    it is read one volume at a time. ``threshold`` None: each volume's :func:`surface_threshold`. ``labels`` (n,)
    group the particles (None: one group), ``colors`` (n, 4) RGBA (the first of each cluster is used).
    ``progress(done, total)`` is called after each particle. Returns the clusters sorted by label.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    n = len(positions)
    if len(rotations) != n:
        raise InputError(f"{len(rotations)} rotations for {n} positions")
    labels = np.zeros(n, np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    colors = np.ones((n, 4)) if colors is None else np.asarray(colors, dtype=float)
    indices = np.arange(n) if particle_indices is None else np.asarray(particle_indices, dtype=np.int64)
    parts: dict[int, list] = {}
    count = 0
    for i, vol in enumerate(volumes):
        if i >= n:
            raise InputError(f"more volumes than the {n} particles given")
        level = surface_threshold(vol) if threshold is None else float(threshold)
        mesh = iso_surface(vol, level, volume_pixel_size, step)
        verts = posed_vertices(mesh.vertices, rotations[i], positions[i], tomogram_pixel_size)
        parts.setdefault(int(labels[i]), []).append((i, verts, mesh.faces))
        count += 1
        if progress is not None:
            progress(count, n)
    if count != n:
        raise InputError(f"{count} volumes for {n} particles")
    out = []
    for label in sorted(parts):
        items = parts[label]
        offsets = np.cumsum([0] + [len(v) for _, v, _ in items])
        vertices = np.concatenate([v for _, v, _ in items])
        faces = np.concatenate([f + o for (_, _, f), o in zip(items, offsets[:-1])]).astype(np.int32)
        owner = np.repeat(np.arange(len(items), dtype=np.int32), np.diff(offsets))
        first = items[0][0]
        out.append(
            ClusterSurface(
                label=label,
                mesh=Mesh(vertices, faces),
                color=colors[first],
                particle_indices=indices[[i for i, _, _ in items]],
                vertex_particle=owner,
            )
        )
    return out
