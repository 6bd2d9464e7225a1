"""Particle STAR files with one row per particle (a sub-tomogram volume series, as Warp writes for RELION 3; the
particles STAR of a RELION 5 / WarpTools set): positions and poses without reading any image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.star import find_particle_block, read_star, require_columns
from tomodrgn.physics.pose import euler_to_matrix

ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
COORDINATES = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
ORIGINS_A = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")


def read_volume_series(
    star: str | Path, pixel_size: float, tomogram_column: str = "rlnMicrographName"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tomogram name (n,) object, position (n, 3) Å, pose (n, 3, 3) RELION matrix) of each row of ``star``'s
    particle block. ``pixel_size``: Å per pixel of ``_rlnCoordinateX/Y/Z``; ``_rlnOriginX/Y/ZAngst`` are subtracted
    (RELION's re-centring, docs/architecture.md "shift"). ``tomogram_column``: with or without the leading ``_``."""
    path = Path(star)
    blocks = read_star(path)
    df = blocks[find_particle_block(blocks, path)]
    column = tomogram_column.lstrip("_")
    require_columns(df, [*ANGLES, *COORDINATES, column], path, "a particle's tomogram, position and pose")
    if len(df) == 0:
        raise InputError(f"{path}: no particle rows")
    positions = df[list(COORDINATES)].to_numpy(np.float64) * pixel_size
    if all(c in df for c in ORIGINS_A):
        positions = positions - df[list(ORIGINS_A)].to_numpy(np.float64)
    rotations = euler_to_matrix(*df[list(ANGLES)].to_numpy(np.float64).T)
    return df[column].astype(str).to_numpy(object), positions, np.asarray(rotations, dtype=np.float64)
