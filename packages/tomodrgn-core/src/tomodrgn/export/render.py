"""Shaded iso-surface pictures of a volume without a display (numpy/scipy ray casting), for movies.

View convention (ChimeraX's default view of a map, no mirror): the volume's x (last array axis) points right on
the screen, y up, z towards the viewer; rays enter at +z and the first voxel above the level along each ray is the
surface seen. A view rotation ``R`` (3×3, acting on (x, y, z) column vectors about the box centre, voxel D/2) turns
the object: a point at ``p`` is seen at ``R @ p``. :func:`view_rotation` builds the turn used by movies (a tilt
towards the viewer by ``elevation``, then a turn about the screen's vertical axis by ``azimuth``).

Shading: Lambert (key light from the upper left, in front) plus ambient, with normals from the volume's gradient at
the hit; each pixel's colour is ``color`` × shade. The picture is ``size``² pixels covering a sphere about the box
centre (``radius``; by default the one holding every voxel above the level), so the object stays in frame at every
angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates, maximum_filter

DEFAULT_COLOR = (0.70, 0.78, 0.95)  # light blue-grey surface
BACKGROUND = (0.0, 0.0, 0.0)
LIGHT = np.array([-0.45, 0.55, 0.70])  # (x, y, z): upper left, in front
AMBIENT = 0.25
STEP = 0.5  # ray-marching step, voxels; the crossing is interpolated between steps


@dataclass
class Rendering:
    """``image`` (size, size, 3) uint8 RGB, row 0 at the top; ``depth`` (size, size) float32: the hit's z in the
    view frame (Å, +z towards the viewer, 0 at the box centre), NaN where the ray misses; ``pixel`` Å per pixel."""

    image: np.ndarray
    depth: np.ndarray
    pixel: float


def view_rotation(azimuth: float = 0.0, elevation: float = 0.0) -> np.ndarray:
    """3×3 rotation (acting on (x, y, z)): tilt about the screen's x axis by ``elevation`` (degrees; positive brings
    the top towards the viewer), then turn about the screen's y axis by ``azimuth`` (degrees; positive moves the
    front to the right)."""
    a, e = np.deg2rad(azimuth), np.deg2rad(elevation)
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return turn @ tilt


def _ray_starts(
    vol: np.ndarray,
    level: float,
    rot: np.ndarray,
    centre_xyz: np.ndarray,
    half: float,
    px: float,
    sx: np.ndarray,
    sy: np.ndarray,
) -> np.ndarray:
    """Per ray (screen ``sx``, ``sy`` voxels), a view depth in front of every voxel above ``level`` that it can
    meet, NaN where it meets none: the voxels above the level, turned into the view, splatted on a one-voxel grid
    (front-most depth per cell), widened by two cells and a margin of two voxels (a trilinear sample further than
    √3 voxels from every voxel above the level is below it)."""
    above = np.argwhere(vol >= level)[:, ::-1] - centre_xyz  # (n, 3) x, y, z voxels from the centre
    view = above @ rot.T
    cells = int(np.ceil(2 * half)) + 1
    front = np.full((cells, cells), -np.inf)
    col = np.clip(np.floor(view[:, 0] + half).astype(int), 0, cells - 1)
    row = np.clip(np.floor(view[:, 1] + half).astype(int), 0, cells - 1)
    np.maximum.at(front, (row, col), view[:, 2])
    front = maximum_filter(front, size=5, mode="constant", cval=-np.inf)
    r = np.clip(np.floor(sy + half).astype(int), 0, cells - 1)
    c = np.clip(np.floor(sx + half).astype(int), 0, cells - 1)
    start = front[r, c] + 2.0
    return np.where(np.isfinite(start), np.minimum(start, half), np.nan)


def surface_radius(volume: np.ndarray, level: float) -> float:
    """Voxels from the box centre (D/2) to the farthest voxel above ``level``, plus one (at least 1)."""
    vol = np.asarray(volume)
    above = np.argwhere(vol >= level)
    if len(above) == 0:
        return 1.0
    return float(np.linalg.norm(above - np.array(vol.shape) // 2, axis=1).max()) + 1.0


def render_surface(
    volume: np.ndarray,
    level: float,
    rotation: np.ndarray | None = None,
    size: int = 256,
    pixel_size: float = 1.0,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    background: tuple[float, float, float] = BACKGROUND,
    radius: float | None = None,
) -> Rendering:
    """Picture of the iso-surface of ``volume`` (D, D, D; z, y, x; voxel ``pixel_size`` Å) at ``level``, seen after
    ``rotation`` (default: none), ``size`` pixels square framing ``radius`` voxels about the box centre (default
    :func:`surface_radius`; see the module's view convention)."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"render_surface needs a 3-D volume, got shape {vol.shape}")
    rot = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    centre_xyz = np.array(vol.shape[::-1], dtype=np.float64) // 2
    half = 1.05 * float(surface_radius(vol, level) if radius is None else radius)
    px = 2 * half / size  # voxels per pixel (and per depth step)
    grid = (np.arange(size) + 0.5) * px - half
    sx, sy = np.meshgrid(grid, -grid)  # screen x right, y up (row 0 at the top)
    inv = rot.T  # view frame → object frame

    def sample(view_xyz: np.ndarray, data: np.ndarray) -> np.ndarray:
        obj = inv @ view_xyz + centre_xyz[:, None]  # (3, n): x, y, z voxel coordinates
        return map_coordinates(data, obj[::-1], order=1, mode="constant", cval=float(vol.min()))

    start = _ray_starts(vol, level, rot, centre_xyz, half, px, sx.ravel(), sy.ravel())
    depth = np.full(sx.size, np.nan)
    live = np.flatnonzero(~np.isnan(start))  # rays that can meet the surface, marched front to back
    z = start[live]
    prev = sample(np.stack([sx.ravel()[live], sy.ravel()[live], z]), vol)
    while len(live):
        z = z - STEP
        vals = sample(np.stack([sx.ravel()[live], sy.ravel()[live], z]), vol)
        hit = (vals >= level) & (prev < level)
        frac = (level - prev[hit]) / np.maximum(vals[hit] - prev[hit], 1e-12)  # sub-step position of the crossing
        depth[live[hit]] = z[hit] + (1 - frac) * STEP
        keep = ~hit & (z > -half)
        live, z, prev = live[keep], z[keep], vals[keep]
    hit = ~np.isnan(depth)
    image = np.tile(np.asarray(background, dtype=np.float64), (sx.size, 1))
    if hit.any():
        points = np.stack([sx.ravel()[hit], sy.ravel()[hit], depth[hit]])
        grads = np.stack([sample(points, g) for g in np.gradient(vol)[::-1]])  # object frame (x, y, z)
        normals = -(rot @ grads)  # outward: the values fall outwards
        normals /= np.maximum(np.linalg.norm(normals, axis=0), 1e-12)
        light = LIGHT / np.linalg.norm(LIGHT)
        shade = AMBIENT + (1 - AMBIENT) * np.clip(light @ normals, 0, 1)
        image[hit] = np.outer(shade, np.asarray(color, dtype=np.float64))
    image = np.clip(np.round(image * 255), 0, 255).astype(np.uint8).reshape(size, size, 3)
    return Rendering(image, (depth * pixel_size).astype(np.float32).reshape(size, size), float(px * pixel_size))
