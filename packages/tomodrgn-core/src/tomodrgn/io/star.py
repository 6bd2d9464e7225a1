"""STAR files as dictionaries of blocks (``starfile``), with the helpers the particle readers share.

Column names are stored without the leading underscore, as ``starfile`` returns them (``rlnImageName``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from tomodrgn.io.errors import InputError

Block = pd.DataFrame | dict


def read_star(path: str | Path) -> dict[str, Block]:
    """Read every block of a STAR file, in file order (block name → DataFrame, or dict for a non-loop block)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"STAR file not found: {path}")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as e:  # starfile raises many kinds of errors on malformed files
        raise InputError(f"cannot parse STAR file {path}: {e}") from e
    if not blocks:
        raise InputError(f"STAR file {path} has no data block")
    return dict(blocks)


def write_star(blocks: dict[str, Block], path: str | Path) -> Path:
    """Write blocks to a STAR file (written to a temporary name, then renamed; no temporary file is left when either
    fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        starfile.write(blocks, tmp, float_format="%.6f", overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only when writing or renaming failed
    return path


def star_column(name: str) -> str:
    """The STAR spelling of a column (``rlnImageName`` → ``_rlnImageName``), for messages."""
    return "_" + name


def loop_blocks(blocks: dict[str, Block]) -> dict[str, pd.DataFrame]:
    """The loop (table) blocks only."""
    return {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}


def find_optics_block(blocks: dict[str, Block]) -> str | None:
    """Name of the optics block (``data_optics``), or None (RELION 3.0 style)."""
    for name, df in loop_blocks(blocks).items():
        if name == "optics" or (name != "particles" and "rlnOpticsGroup" in df and "rlnImageName" not in df):
            return name
    return None


def find_particle_block(blocks: dict[str, Block], path: Path) -> str:
    """Name of the block with one row per tilt image: the one with ``_rlnImageName`` (else ``particles``)."""
    tables = loop_blocks(blocks)
    for name, df in tables.items():
        if "rlnImageName" in df:
            return name
    if "particles" in tables:
        return "particles"
    optics = find_optics_block(blocks)
    rest = [n for n in tables if n != optics]
    if len(rest) == 1:
        return rest[0]
    raise InputError(f"{path}: no particle block found (no block has the column _rlnImageName)")


def require_columns(df: pd.DataFrame, names: Iterable[str], path: Path, what: str) -> None:
    """Raise :class:`InputError` naming the first of ``names`` that ``df`` lacks."""
    for name in names:
        if name not in df:
            raise InputError(f"{path}: required column {star_column(name)} is missing ({what})")


def join_optics(particles: pd.DataFrame, optics: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    """Per-row view of ``particles`` with the optics-group columns it lacks filled in from ``optics``.

    Rows are matched on ``_rlnOpticsGroup``; the result has the particles' index and row order.
    """
    if optics is None:
        return particles
    extra = [c for c in optics.columns if c not in particles.columns and c != "rlnOpticsGroupName"]
    if not extra:
        return particles
    if "rlnOpticsGroup" not in optics:
        raise InputError(f"{path}: the optics block lacks the column _rlnOpticsGroup")
    if "rlnOpticsGroup" in particles:
        groups = particles["rlnOpticsGroup"].to_numpy()
    elif len(optics) == 1:
        groups = np.full(len(particles), optics["rlnOpticsGroup"].iloc[0])
    else:
        raise InputError(f"{path}: several optics groups but the particle block lacks _rlnOpticsGroup")
    table = optics.set_index("rlnOpticsGroup")
    missing = set(pd.unique(groups)) - set(table.index)
    if missing:
        names = sorted(str(m) for m in missing)
        raise InputError(f"{path}: optics group(s) {names} used by particles are not in the optics block")
    joined = table.loc[groups, extra].reset_index(drop=True)
    joined.index = particles.index
    return pd.concat([particles, joined], axis=1)


def split_image_name(values: Iterable[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Split ``index@stack`` names into 0-based int64 indices and stack names (as written in the file).

    A name without ``@`` refers to the first (only) image of the file.
    """
    indices, stacks = [], []
    for row, value in enumerate(values):
        text = str(value)
        if "@" in text:
            idx, _, stack = text.partition("@")
            try:
                i = int(idx)
            except ValueError:
                raise InputError(f"{path}: row {row}: bad _rlnImageName {text!r} (expected index@stack)") from None
            if i < 1:
                raise InputError(f"{path}: row {row}: _rlnImageName index {i} must be ≥ 1 (1-based)")
            indices.append(i - 1)
        else:
            stack = text
            indices.append(0)
        stacks.append(stack)
    return np.asarray(indices, dtype=np.int64), np.asarray(stacks, dtype=object)
