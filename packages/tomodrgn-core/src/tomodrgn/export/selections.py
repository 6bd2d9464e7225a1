"""Particle selections: filtered STAR files and plain-text index lists.

Index lists are 0-based particle indices in the training STAR's particle order (order of first appearance of each
particle), one integer per line; ``#`` starts a comment. They are read as text, ``.npy`` or ``.pkl``
(:mod:`tomodrgn.io.index_lists`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries, read_particles, write_particle_subset


def select_indices(
    n_particles: int,
    indices: Iterable[int] | None = None,
    labels: np.ndarray | None = None,
    keep: Iterable | None = None,
    invert: bool = False,
) -> np.ndarray:
    """Sorted particle indices chosen by ``indices`` or by ``labels`` (n_particles,) whose value is in ``keep``;
    ``invert`` returns the complement (the particles to exclude become the ones kept)."""
    if (indices is None) == (labels is None):
        raise InputError("give exactly one of indices or labels")
    chosen = np.zeros(n_particles, dtype=bool)
    if indices is not None:
        idx = np.asarray(list(indices), dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= n_particles)]
        if bad.size:
            raise InputError(f"particle index {int(bad[0])} out of range 0..{n_particles - 1}")
        chosen[idx] = True
    else:
        labels = np.asarray(labels)
        if len(labels) != n_particles:
            raise InputError(f"{len(labels)} labels for {n_particles} particles")
        if keep is None:
            raise InputError("selecting by labels needs keep= (the label values to keep)")
        chosen = np.isin(labels, np.asarray(list(keep)))
    if invert:
        chosen = ~chosen
    return np.flatnonzero(chosen).astype(np.int64)


def filter_star(
    star: str | Path | ParticleSeries,
    out_star: str | Path,
    *,
    indices: Iterable[int] | None = None,
    labels: np.ndarray | None = None,
    keep: Iterable | None = None,
    invert: bool = False,
    labels_name: str = "labels",
) -> Path:
    """Write the selected particles of ``star`` (a STAR path or a read :class:`ParticleSeries`; see
    :func:`select_indices`) as a STAR file of the input's flavour with every column kept, for re-refinement in
    RELION / Warp / M (:func:`tomodrgn.io.particles.write_particle_subset`). ``labels`` must hold one label per
    particle of ``star`` (InputError naming ``labels_name``, the STAR and both counts otherwise)."""
    series = star if isinstance(star, ParticleSeries) else read_particles(star)
    if labels is not None and len(np.atleast_1d(labels)) != series.n_particles:
        raise InputError(
            f"{labels_name}: {len(np.atleast_1d(labels))} labels but {series.star_path} has {series.n_particles} "
            "particles; labels of a run trained on a subset (--first / --ind in its config.json) cover only those "
            "particles: use the cluster STARs of its analyze folder, or give the STAR of that subset"
        )
    chosen = select_indices(series.n_particles, indices, labels, keep, invert)
    return write_particle_subset(series, chosen, out_star)


def write_index_list(path: str | Path, indices: Iterable[int], comment: str | None = None) -> Path:
    """Write particle indices, one per line (optional leading ``# comment``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{int(i)}\n" for i in indices)
    path.write_text((f"# {comment}\n" if comment else "") + body)
    return path


def write_keep_exclude(
    outdir: str | Path, stem: str, keep_indices: Iterable[int], n_particles: int
) -> tuple[Path, Path]:
    """Write ``<stem>.keep.txt`` (the given indices) and ``<stem>.exclude.txt`` (all others) under ``outdir``."""
    keep = select_indices(n_particles, indices=keep_indices)
    exclude = select_indices(n_particles, indices=keep, invert=True)
    outdir = Path(outdir)
    return (
        write_index_list(outdir / f"{stem}.keep.txt", keep, f"{len(keep)} of {n_particles} particles kept"),
        write_index_list(outdir / f"{stem}.exclude.txt", exclude, f"{len(exclude)} of {n_particles} excluded"),
    )


def split_star_by_tomogram(star: str | Path, column: str, tomogram: str = "all") -> list[Path]:
    """``<star stem>_<name>.star`` beside ``star`` for each tomogram name (``all``: each value of ``column``), with
    the particle-block rows whose ``column`` contains that name, every other block as it is (the published tomoDRGN's
    ``filter_star --tomogram``)."""
    from tomodrgn.io.star import find_particle_block, read_star, require_columns, write_star

    path = Path(star)
    blocks = read_star(path)
    name = find_particle_block(blocks, path)
    df, col = blocks[name], column.lstrip("_")
    require_columns(df, [col], path, "--tomo-id-col names the tomogram of each row")
    values = df[col].astype(str)
    names = list(dict.fromkeys(values)) if tomogram == "all" else [tomogram]
    written = []
    for t in names:
        rows = values.str.contains(t, regex=False).to_numpy()
        if not rows.any():
            raise InputError(f"--tomogram {t}: no row of {path} has it in {column}")
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in t)
        written.append(
            write_star({**blocks, name: df[rows].reset_index(drop=True)}, path.with_name(f"{path.stem}_{safe}.star"))
        )
    return written


def filter_star_rows(
    star: str | Path,
    out_star: str | Path,
    *,
    indices: Iterable[int] | None = None,
    labels: np.ndarray | None = None,
    keep: Iterable | None = None,
    invert: bool = False,
) -> Path:
    """The selected rows of a STAR file with one row per particle (a sub-tomogram volume series; tomoDRGN's
    ``filter_star --starfile-type volumeseries``): every block written, the particle block's rows by
    :func:`select_indices` over its rows, all columns kept. Refuses an empty selection."""
    from tomodrgn.io.star import find_particle_block, read_star, write_star

    path = Path(star)
    blocks = read_star(path)
    name = find_particle_block(blocks, path)
    rows = select_indices(len(blocks[name]), indices=indices, labels=labels, keep=keep, invert=invert)
    if len(rows) == 0:
        raise InputError(f"{path}: the selection keeps no particle")
    blocks[name] = blocks[name].iloc[rows].reset_index(drop=True)
    return write_star(blocks, out_star)
