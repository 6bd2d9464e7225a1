"""Reading a particle subset: the first N particles or a 0-based index list (``--first`` / ``--ind``), and the checks
on the particle rows that :func:`~tomodrgn.io.particles.read_particles` leaves to its callers (a block without
rows, the same tilt image listed twice).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.index_lists import read_index_list
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.io.star import find_particle_block, read_star

#: per-particle fields of :class:`ParticleSeries` (every other array / frame of length n_images is per image)
_PER_PARTICLE = ("particle_names", "image_indices", "position", "tomogram", "class_label")


def read_particles_checked(star: str | Path, **kwargs) -> ParticleSeries:
    """:func:`read_particles` with two more checks: a particle block with columns but no rows is reported as such
    (``{file}: the particle block has no rows``), and a tilt image listed twice (same stack and index) is refused
    naming both rows, instead of silently giving its particle an extra tilt."""
    try:
        series = read_particles(star, **kwargs)
    except InputError:
        _raise_if_no_rows(Path(star).absolute())
        raise
    check_duplicate_images(series)
    return series


def _raise_if_no_rows(path: Path) -> None:
    try:
        blocks = read_star(path)
        block = blocks[find_particle_block(blocks, path)]
    except Exception:  # noqa: BLE001 - the original error is the better one then
        return
    if isinstance(block, pd.DataFrame) and len(block) == 0:
        raise InputError(f"{path}: the particle block has no rows") from None


def check_duplicate_images(series: ParticleSeries) -> None:
    """InputError naming the first tilt image (stack file and index) that two rows of the particle block share."""
    keys = pd.Series([f"{i}@{p}" for i, p in zip(series.stack_index, series.stack_path)])
    dup = keys.duplicated(keep=False).to_numpy()
    if not dup.any():
        return
    rows = np.flatnonzero(keys.to_numpy() == keys[np.flatnonzero(dup)[0]])
    names = series.images["rlnImageName"].astype(str).to_numpy() if "rlnImageName" in series.images else keys
    raise InputError(
        f"{series.star_path}: rows {rows[0]} and {rows[1]} are the same tilt image ({names[rows[0]]}); "
        "each tilt image must be listed once"
    )


def read_indices(path: str | Path, n_particles: int) -> np.ndarray:
    """A 0-based particle index list (:func:`tomodrgn.io.index_lists.read_index_list`), checked against
    ``n_particles``: InputError naming the file and the bad index."""
    idx = read_index_list(path)
    if idx.size == 0:
        raise InputError(f"{path}: the index list is empty")
    bad = idx[(idx < 0) | (idx >= n_particles)]
    if bad.size:
        raise InputError(f"{path}: particle index {int(bad[0])} out of range 0..{n_particles - 1}")
    if len(np.unique(idx)) != len(idx):
        raise InputError(f"{path}: particle index {int(idx[np.flatnonzero(pd.Series(idx).duplicated())[0]])} twice")
    return idx


def chosen_indices(
    n_particles: int, first: int | None = None, ind: str | Path | np.ndarray | None = None
) -> np.ndarray:
    """The one ``--first`` / ``--ind`` rule: the 0-based particles of ``ind`` (an index-list file or an array, in
    its order; all particles when None), then the first ``first`` of them. Errors (InputError) name the option or
    the file and the bad index."""
    n = n_particles
    if ind is None:
        chosen = np.arange(n, dtype=np.int64)
    elif isinstance(ind, (str, Path)):
        chosen = read_indices(ind, n)
    else:
        chosen = np.asarray(ind, dtype=np.int64).reshape(-1)
        if chosen.size == 0:
            raise InputError("--ind: no particle indices given")
        bad = chosen[(chosen < 0) | (chosen >= n)]
        if bad.size:
            raise InputError(f"--ind: particle index {int(bad[0])} out of range 0..{n - 1}")
    if first is not None:
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 1:
            raise InputError(f"--first must be an integer ≥ 1, got {first!r}")
        chosen = chosen[: int(first)]
    return chosen


def select_particles(
    series: ParticleSeries, first: int | None = None, ind: str | Path | np.ndarray | None = None
) -> ParticleSeries:
    """``series`` restricted to the particles :func:`chosen_indices` picks (``ind``, then its first ``first``; in
    that order); the series itself when neither is given.

    The subset keeps only the chosen particles' image rows (in file order); every per-image and per-particle field
    is restricted accordingly.
    """
    if first is None and ind is None:
        return series
    chosen = chosen_indices(series.n_particles, first, ind)
    old_rows = [series.image_indices[p] for p in chosen]
    rows = np.sort(np.concatenate(old_rows))
    new_row = np.full(series.n_images, -1, dtype=np.int64)
    new_row[rows] = np.arange(len(rows))
    changes: dict = {"image_indices": [new_row[r] for r in old_rows]}
    for f in dataclasses.fields(series):
        v = getattr(series, f.name)
        if f.name == "image_indices" or v is None:
            continue
        if f.name in _PER_PARTICLE:
            changes[f.name] = [v[p] for p in chosen] if isinstance(v, list) else np.asarray(v)[chosen]
        elif isinstance(v, pd.DataFrame) and len(v) == series.n_images:
            changes[f.name] = v.iloc[rows].reset_index(drop=True)
        elif isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == series.n_images:
            changes[f.name] = v[rows]
    return dataclasses.replace(series, **changes)
