"""Particle selections: filtered STAR files and plain-text index lists.

Index lists are 0-based particle indices in the training STAR's particle order (order of first appearance of each
particle), one integer per line; ``#`` starts a comment. They are read as text, ``.npy`` or ``.pkl``
(:mod:`tomodrgn.io.index_lists`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.output_dir import check_writable
from tomodrgn.io.particle_series import PROJECT_LEVELS, resolve_stack
from tomodrgn.io.particles import ParticleSeries, read_particles, write_particle_subset
from tomodrgn.io.read_relion5 import is_optimisation_set, is_stack_set
from tomodrgn.io.read_rows import _group_images, detect_flavour
from tomodrgn.io.star import find_particle_block, read_star, require_columns, write_star


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
    tomograms_star: str | Path | None = None,
) -> Path:
    """Write the selected particles of ``star`` (a STAR path or a read :class:`ParticleSeries`; see
    :func:`select_indices`) as a STAR file of the input's flavour with every column kept, for re-refinement in
    RELION / Warp / M. ``labels`` must hold one label per particle of ``star`` (InputError naming ``labels_name``,
    the STAR and both counts otherwise); a selection of no particle is an InputError and writes nothing (a STAR
    without particles cannot be refined or trained on).

    Image-row STARs (Warp/M, RELION 5 rows, nextPYP) are filtered as STAR rows: the stacks need not exist, and
    their names are kept as written (:func:`moved_stack_name`). A RELION 5 / WarpTools 2-D stack set is read
    whole (``tomograms_star`` as :func:`~tomodrgn.io.particles.read_particles`) and written as a set
    (:func:`~tomodrgn.io.particles.write_particle_subset`)."""
    out_star = _check_out_star(out_star)
    series = star if isinstance(star, ParticleSeries) else None
    rows = None if series is not None else _star_rows(Path(star).absolute())
    if rows is None and series is None:  # a 2-D stack set: read whole
        series = read_particles(star, tomograms_star=tomograms_star, ctf="unused", dose="unused")
    if series is not None:
        rows = _StarRows(series.star_path, series.blocks, series.image_block, series.images, series.image_indices,
                         series.datadir)  # fmt: skip
    chosen = _chosen(rows, indices, labels, keep, invert, labels_name)
    if series is not None and series.stack_set is not None:
        return write_particle_subset(series, chosen, out_star)
    return _write_rows(rows, chosen, out_star)


@dataclass
class _StarRows:
    """The tilt-image rows of a particle STAR, grouped into particles: ``blocks`` as read, ``images`` the rows of
    its block ``image_block``, ``image_indices`` each particle's rows in ``images``; ``datadir`` the stacks' folder
    given when read."""

    path: Path
    blocks: dict
    image_block: str
    images: pd.DataFrame
    image_indices: list[np.ndarray]
    datadir: Path | None = None

    @property
    def n_particles(self) -> int:
        return len(self.image_indices)


def _star_rows(path: Path) -> _StarRows | None:
    """The particles of an image-row STAR, from the STAR alone (no stack is opened); None for a 2-D stack set."""
    blocks = read_star(path)
    if is_optimisation_set(blocks) or is_stack_set(blocks):
        return None
    block = find_particle_block(blocks, path)
    _, image_indices = _group_images(blocks[block], detect_flavour(blocks[block], path), path)
    return _StarRows(path, blocks, block, blocks[block], image_indices)


def _check_out_star(out_star: str | Path) -> Path:
    """``out_star`` as an absolute path, refused (InputError) when it is a folder; its folder must be writable."""
    out_star = Path(out_star).absolute()
    if out_star.is_dir():
        raise InputError(f"-o {out_star}: is a folder; give the name of the STAR file to write (e.g. "
                         f"{out_star / 'particles.star'})")  # fmt: skip
    check_writable(out_star.parent)
    return out_star


def _chosen(rows: _StarRows, indices, labels, keep, invert: bool, labels_name: str) -> np.ndarray:
    """The selected particle indices (:func:`select_indices`); InputError for a label count that does not match the
    STAR, and for an empty selection (naming the labels kept and those present)."""
    n, keep = rows.n_particles, None if keep is None else list(keep)
    if labels is not None and len(np.atleast_1d(labels)) != n:
        raise InputError(
            f"{labels_name}: {len(np.atleast_1d(labels))} labels but {rows.path} has {n} particles; labels of a run "
            "trained on a subset (--first / --ind in its config.json) cover only those particles: use the cluster "
            "STARs of its analyze folder, or give the STAR of that subset"
        )
    chosen = select_indices(n, indices, labels, keep, invert)
    if len(chosen) == 0:
        if labels is not None:
            present = ", ".join(str(v) for v in np.unique(np.asarray(labels))[:10])
            what = "every particle of" if invert else "no particle of"
            raise InputError(f"--keep {' '.join(str(k) for k in keep)}: {what} {rows.path} has one of these labels "
                             f"in {labels_name} (labels present: {present}); nothing written")  # fmt: skip
        raise InputError(f"the selection keeps no particle of {rows.path}; nothing written")
    return chosen


def _write_rows(rows: _StarRows, chosen: np.ndarray, out_star: Path) -> Path:
    """Write the image rows of particles ``chosen`` (file order kept) with every block of the input, stack names
    re-pointed for ``out_star``'s folder (:func:`moved_stack_name`)."""
    picked = np.sort(np.concatenate([rows.image_indices[p] for p in chosen]))
    subset = rows.images.iloc[picked].reset_index(drop=True).copy()
    if "rlnImageName" in subset:
        subset["rlnImageName"] = _moved_names(subset["rlnImageName"].astype(str), rows, out_star.parent)
    blocks = dict(rows.blocks)
    blocks[rows.image_block] = subset
    return write_star(blocks, out_star)


def _moved_names(names, rows: _StarRows, out_dir: Path) -> list[str]:
    """``index@stack`` names with each stack re-pointed once (:func:`moved_stack_name`); one warning when stacks
    were not found and the output goes to another folder."""
    moved: dict[str, str] = {}
    missing: list[str] = []
    out = []
    for name in names:
        idx, at, stack = name.rpartition("@") if "@" in name else ("", "", name)
        if stack not in moved:
            moved[stack] = moved_stack_name(stack, rows.path.parent, out_dir, rows.datadir)
            if moved[stack] is None:
                missing.append(stack)
                moved[stack] = stack
        out.append(f"{idx}{at}{moved[stack]}")
    if missing:
        warnings.warn(
            f"{len(missing)} image stack(s) named in {rows.path} not found (e.g. {missing[0]}): their names are "
            f"written as they are; check that they resolve from {out_dir}",
            UserWarning,
            stacklevel=4,
        )
    return out


def moved_stack_name(stack: str, star_dir: Path, out_dir: Path, datadir: Path | None = None) -> str | None:
    """How a STAR in ``out_dir`` names the stack that a STAR in ``star_dir`` names ``stack``, so that RELION (which
    reads names relative to its project folder, the working directory) and our readers (the STAR's folder, its
    parents, the working directory) find the same file: as written when absolute, when ``out_dir`` is ``star_dir``,
    or when it resolves to that file from ``out_dir`` or one of its parents (RELION's project-relative names, the
    output inside the project); else relative to the working directory when that resolves from ``out_dir`` or its
    parents; else absolute. None when the stack is not found (its name cannot be re-pointed)."""
    if Path(stack).is_absolute() or out_dir.resolve() == star_dir.resolve():
        return stack
    found = resolve_stack(stack, star_dir, datadir)
    if found is None:
        return None
    if _resolves_from(stack, out_dir, found):
        return stack
    try:
        relative = str(found.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(found)
    return relative if _resolves_from(relative, out_dir, found) else str(found)


def _resolves_from(name: str, folder: Path, target: Path) -> bool:
    """Whether a relative stack name in a STAR in ``folder`` names ``target`` from that folder or a parent (not the
    working directory, which changes between sessions)."""
    for base in [folder, *list(folder.parents)[:PROJECT_LEVELS]]:
        candidate = base / name
        if candidate.is_file() and candidate.resolve() == target:
            return True
    return False


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
    :func:`select_indices` over its rows, all columns kept. Refuses an empty selection, and an ``out_star`` that is a
    folder."""
    out_star = _check_out_star(out_star)
    path = Path(star)
    blocks = read_star(path)
    name = find_particle_block(blocks, path)
    rows = select_indices(len(blocks[name]), indices=indices, labels=labels, keep=keep, invert=invert)
    if len(rows) == 0:
        raise InputError(f"{path}: the selection keeps no particle")
    blocks[name] = blocks[name].iloc[rows].reset_index(drop=True)
    return write_star(blocks, out_star)
