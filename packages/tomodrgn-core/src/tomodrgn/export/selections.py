"""Particle selections: filtered STAR files and plain-text index lists.

Index lists are 0-based particle indices in the training STAR's particle order (order of first appearance of each
particle), one integer per line; ``#`` starts a comment. They are read as text, ``.npy`` or ``.pkl``
(:mod:`tomodrgn.io.index_lists`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.output_dir import check_writable
from tomodrgn.io.particles import ParticleSeries, write_particle_subset
from tomodrgn.io.read_relion5 import is_optimisation_set, is_stack_set, stack_set_files
from tomodrgn.io.read_rows import _group_images, detect_flavour
from tomodrgn.io.star import find_particle_block, read_star, require_columns, write_star
from tomodrgn.io.star_paths import moved_image_names
from tomodrgn.io.write_relion5 import stack_subset_files, write_stack_subset


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
    datadir: str | Path | None = None,
) -> Path:
    """Write the selected particles of ``star`` (a STAR path or a read :class:`ParticleSeries`; see
    :func:`select_indices`) as a STAR file of the input's flavour with every column kept, for re-refinement in
    RELION / Warp / M. ``labels`` must hold one label per particle of ``star`` (InputError naming ``labels_name``,
    the STAR and both counts otherwise); a selection of no particle is an InputError and writes nothing (a STAR
    without particles cannot be refined or trained on); so is an ``out_star`` that would replace an input file.

    A STAR path is filtered as STAR rows, without opening a stack: image-row STARs (Warp/M, RELION 5 rows, nextPYP)
    as they are, a RELION 5 / WarpTools 2-D stack set (``tomograms_star`` as
    :func:`~tomodrgn.io.particles.read_particles`) as a set (:func:`~tomodrgn.io.write_relion5.write_stack_subset`).
    Stack names are re-pointed for ``out_star``'s folder where the stacks are found (next to the STAR, its parents,
    ``datadir``), else kept as written (:func:`~tomodrgn.io.star_paths.moved_image_names`)."""
    out_star = _check_out_star(out_star)
    if isinstance(star, ParticleSeries):
        ss = star.stack_set
        _check_not_input(out_star, [star.star_path] + ([ss.particles_star, ss.tomograms_star] if ss else []))
        chosen = _chosen(star.n_particles, star.star_path, indices, labels, keep, invert, labels_name)
        return write_particle_subset(star, chosen, out_star)
    path = Path(star).absolute()
    ddir = None if datadir is None else Path(datadir).absolute()
    blocks = read_star(path)
    if is_optimisation_set(blocks) or is_stack_set(blocks):
        ss, blocks = stack_set_files(path, blocks, tomograms_star)
        _check_not_input(out_star, [path, ss.particles_star, ss.tomograms_star])
        chosen = _chosen(len(ss.particle_rows), path, indices, labels, keep, invert, labels_name)
        return write_stack_subset(ss, blocks, chosen, out_star, ddir)
    _check_not_input(out_star, [path])
    rows = _star_rows(path, blocks, ddir)
    chosen = _chosen(rows.n_particles, path, indices, labels, keep, invert, labels_name)
    return _write_rows(rows, chosen, out_star)


def _check_not_input(out_star: Path, inputs: list[Path]) -> None:
    """InputError when ``out_star`` (or, for a 2-D stack set, the particles / tomograms STAR written next to it) would
    replace one of the ``inputs``."""
    written = [out_star, *stack_subset_files(out_star)]
    for target in written:
        for given in inputs:
            if target.exists() and given.exists() and target.resolve() == given.resolve():
                raise InputError(f"-o {out_star}: would replace the input {given}; give another name")


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


def _star_rows(path: Path, blocks: dict, datadir: Path | None) -> _StarRows:
    """The particles of an image-row STAR (``blocks`` its blocks), from the STAR alone (no stack is opened)."""
    block = find_particle_block(blocks, path)
    _, image_indices = _group_images(blocks[block], detect_flavour(blocks[block], path), path)
    return _StarRows(path, blocks, block, blocks[block], image_indices, datadir)


def _check_out_star(out_star: str | Path) -> Path:
    """``out_star`` as an absolute path, refused (InputError) when it is a folder; its folder must be writable."""
    out_star = Path(out_star).absolute()
    if out_star.is_dir():
        raise InputError(f"-o {out_star}: is a folder; give the name of the STAR file to write (e.g. "
                         f"{out_star / 'particles.star'})")  # fmt: skip
    check_writable(out_star.parent)
    return out_star


def _chosen(n: int, path: Path, indices, labels, keep, invert: bool, labels_name: str) -> np.ndarray:
    """The selected particle indices (:func:`select_indices`); InputError for a label count that does not match the
    STAR, and for an empty selection (naming the labels kept and those present)."""
    keep = None if keep is None else list(keep)
    if labels is not None and len(np.atleast_1d(labels)) != n:
        raise InputError(
            f"{labels_name}: {len(np.atleast_1d(labels))} labels but {path} has {n} particles; labels of a run "
            "trained on a subset (--first / --ind in its config.json) cover only those particles: use the cluster "
            "STARs of its analyze folder, or give the STAR of that subset"
        )
    chosen = select_indices(n, indices, labels, keep, invert)
    if len(chosen) == 0:
        if labels is not None:
            present = ", ".join(str(v) for v in np.unique(np.asarray(labels))[:10])
            what = "every particle of" if invert else "no particle of"
            raise InputError(f"--keep {' '.join(str(k) for k in keep)}: {what} {path} has one of these labels "
                             f"in {labels_name} (labels present: {present}); nothing written")  # fmt: skip
        raise InputError(f"the selection keeps no particle of {path}; nothing written")
    return chosen


def _write_rows(rows: _StarRows, chosen: np.ndarray, out_star: Path) -> Path:
    """Write the image rows of particles ``chosen`` (file order kept) with every block of the input, stack names
    re-pointed for ``out_star``'s folder (:func:`~tomodrgn.io.star_paths.moved_image_names`)."""
    picked = np.sort(np.concatenate([rows.image_indices[p] for p in chosen]))
    subset = rows.images.iloc[picked].reset_index(drop=True).copy()
    if "rlnImageName" in subset:
        subset["rlnImageName"] = moved_image_names(subset["rlnImageName"].astype(str), rows.path, out_star.parent,
                                                   rows.datadir)  # fmt: skip
    blocks = dict(rows.blocks)
    blocks[rows.image_block] = subset
    return write_star(blocks, out_star)


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
    path = Path(star).absolute()
    _check_not_input(out_star, [path])
    blocks = read_star(path)
    name = find_particle_block(blocks, path)
    rows = select_indices(len(blocks[name]), indices=indices, labels=labels, keep=keep, invert=invert)
    if len(rows) == 0:
        raise InputError(f"{path}: the selection keeps no particle")
    blocks[name] = blocks[name].iloc[rows].reset_index(drop=True)
    return write_star(blocks, out_star)
