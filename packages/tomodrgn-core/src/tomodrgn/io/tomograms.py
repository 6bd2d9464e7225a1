"""RELION tomograms and tilt-series STARs: per-tomogram tilt tables and the tilt projection geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.star import Block, read_star


def read_tilt_series_star(path: str | Path) -> dict[str, pd.DataFrame]:
    """Per-tomogram tilt tables (tomogram name → one row per tilt, acquisition-file order) from RELION 5 STARs.

    ``path`` is either a tomograms STAR (``_rlnTomoName`` + ``_rlnTomoTiltSeriesStarFile``, resolved next to it or
    its parent folders) or a tilt-series STAR with one block per tomogram (block name = tomogram name).
    """
    path = Path(path)
    blocks = {k: v for k, v in read_star(path).items() if isinstance(v, pd.DataFrame)}
    for df in blocks.values():
        if "rlnTomoTiltSeriesStarFile" in df and "rlnTomoName" in df:
            out = {}
            for name, ts_file in zip(df["rlnTomoName"].astype(str), df["rlnTomoTiltSeriesStarFile"].astype(str)):
                found = None
                for base in (path.parent, *path.parent.parents):
                    for c in (base / ts_file, base / Path(ts_file).name):
                        if c.is_file():
                            found = c
                            break
                    if found:
                        break
                if found is None:
                    raise InputError(f"{path}: tilt-series STAR {ts_file} of tomogram {name!r} not found")
                ts_blocks = read_tilt_series_star(found)
                out[name] = ts_blocks.get(name, next(iter(ts_blocks.values())))
            return out
    return blocks


# ------------------------------------------------------------------------------------------ tilt projection geometry
PROJECTION_COLUMNS = ("rlnTomoProjX", "rlnTomoProjY", "rlnTomoProjZ", "rlnTomoProjW")
ANGLE_COLUMNS = ("rlnTomoXTilt", "rlnTomoYTilt", "rlnTomoZRot")


def parse_vector(value, n: int, where: str) -> np.ndarray:
    """A STAR vector written as a string ``[a,b,c]`` (or ``a,b,c``) → float64 (n,); InputError naming ``where``."""
    text = str(value).strip().strip("[]")
    try:
        out = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise InputError(f"{where}: cannot read {value!r} as a vector of {n} numbers") from None
    if len(out) != n or not np.isfinite(out).all():
        raise InputError(f"{where}: expected {n} finite numbers, got {value!r}")
    return out


def global_table(blocks: dict[str, Block], path: Path) -> pd.DataFrame:
    """The tomograms STAR's one-row-per-tomogram table (``data_global``, else the loop block with ``_rlnTomoName``)."""
    tables = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if "global" in tables:
        return tables["global"]
    for df in tables.values():
        if "rlnTomoName" in df:
            return df
    raise InputError(f"{path}: no data_global block (one row per tomogram with _rlnTomoName) in the tomograms STAR")


def tilt_table(blocks: dict[str, Block], path: Path, tomogram: str) -> pd.DataFrame:
    """Per-tilt rows of ``tomogram``: its block ``data_<tomogram>`` in the tomograms STAR (WarpTools, RELION 4), else
    the tilt-series STAR named by its ``_rlnTomoTiltSeriesStarFile`` (RELION 5; resolved next to the tomograms STAR
    or in its parent folders)."""
    block = blocks.get(tomogram)
    if isinstance(block, pd.DataFrame):
        return block
    glob = global_table(blocks, path)
    rows = glob[glob["rlnTomoName"].astype(str) == tomogram]
    if len(rows) and "rlnTomoTiltSeriesStarFile" in glob:
        name = str(rows["rlnTomoTiltSeriesStarFile"].iloc[0])
        found = find_relative(name, path.parent)
        if found is None:
            raise InputError(f"{path}: tilt-series STAR {name} of tomogram {tomogram!r} not found")
        ts_blocks = {k: v for k, v in read_star(found).items() if isinstance(v, pd.DataFrame)}
        if tomogram in ts_blocks:
            return ts_blocks[tomogram]
        if len(ts_blocks) == 1:
            return next(iter(ts_blocks.values()))
        raise InputError(f"{found}: no block data_{tomogram} for tomogram {tomogram!r}")
    raise InputError(
        f"{path}: tomogram {tomogram!r} has no tilt-series block data_{tomogram} (and no _rlnTomoTiltSeriesStarFile)"
    )


def find_relative(name: str, base: Path, levels: int = 6) -> Path | None:
    """A path as written in a RELION STAR (relative to the project folder): absolute, under ``base`` or one of its
    parent folders (``levels`` up), or under the working directory."""
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    for folder in [base, *list(base.parents)[:levels], Path.cwd()]:
        if (folder / p).is_file():
            return (folder / p).resolve()
    return None


def active_rotation(axis: int, degrees: np.ndarray) -> np.ndarray:
    """Right-handed (active) rotations about x (0), y (1) or z (2) by ``degrees``: (..., 3, 3)."""
    a = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.zeros(a.shape + (3, 3))
    m[..., axis, axis] = 1.0
    m[..., i, i] = c
    m[..., j, j] = c
    m[..., i, j] = -s
    m[..., j, i] = s
    return m


def projection_rotations(table: pd.DataFrame, path: Path, tomogram: str) -> np.ndarray:
    """Rotation parts R_f (T, 3, 3) of the tilts' projection matrices (tomogram → tilt-image coordinates).

    From ``_rlnTomoProjX/Y/Z`` (rows of the 4×4 matrix, strings ``[a,b,c,d]``), else from RELION 5's angles:
    R = Rz(``_rlnTomoZRot``)·Ry(``_rlnTomoYTilt``)·Rx(``_rlnTomoXTilt``), right-handed rotations of the specimen
    (``Tomogram::setProjectionMatrix``). A scaled matrix (binned projections) is normalised; a non-rotation (shear,
    mirror) is an InputError.
    """
    where = f"{path}: tomogram {tomogram!r}"
    if all(c in table for c in PROJECTION_COLUMNS[:3]):
        rot = np.empty((len(table), 3, 3))
        for k, c in enumerate(PROJECTION_COLUMNS[:3]):
            rot[:, k] = [parse_vector(v, 4, f"{where} tilt {i} _{c}")[:3] for i, v in enumerate(table[c])]
    elif all(c in table for c in ANGLE_COLUMNS):
        x, y, z = (pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64) for c in ANGLE_COLUMNS)
        if not np.isfinite(np.stack([x, y, z])).all():
            raise InputError(f"{where}: _rlnTomoXTilt/_rlnTomoYTilt/_rlnTomoZRot must be numbers")
        rot = active_rotation(2, z) @ active_rotation(1, y) @ active_rotation(0, x)
    else:
        raise InputError(
            f"{where}: required columns _rlnTomoProjX/Y/Z (or _rlnTomoXTilt, _rlnTomoYTilt, _rlnTomoZRot) are missing "
            "from its tilt-series block"
        )
    det = np.linalg.det(rot)
    if np.any(det <= 0):
        raise InputError(f"{where} tilt {int(np.argmax(det <= 0))}: projection matrix is mirrored or singular")
    rot = rot / np.cbrt(det)[:, None, None]
    err = np.abs(rot @ np.swapaxes(rot, -1, -2) - np.eye(3)).max(axis=(-2, -1))
    if np.any(err > 1e-3):
        raise InputError(f"{where} tilt {int(np.argmax(err))}: projection matrix is not a (scaled) rotation")
    return rot


def relion_y_tilt(rot: np.ndarray) -> np.ndarray:
    """RELION's ``_rlnTomoYTilt`` (degrees) of projection rotations (``Tomogram::getProjectionAnglesFromMatrix``)."""
    return np.degrees(np.arcsin(np.clip(-rot[..., 2, 0], -1.0, 1.0)))
