"""Particle tilt-series from STAR files: one entry point, :func:`read_particles`, for every supported flavour.

Flavours: Warp/M image series, nextPYP exports and RELION 5 per-image rows (:mod:`tomodrgn.io.read_rows`), RELION 5 /
WarpTools 2-D stack sets (:mod:`tomodrgn.io.read_relion5`). Every reader returns a
:class:`~tomodrgn.io.particle_series.ParticleSeries`; :func:`write_particle_subset` writes a subset in the input's
form for re-refinement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.particle_series import CTF_CHOICES, DOSE_CHOICES, ParticleSeries, StackSet, check_choice, resolve_stack
from tomodrgn.io.pixel_size import check_pixel_size
from tomodrgn.io.read_relion5 import is_optimisation_set, is_stack_set, read_stack_set
from tomodrgn.io.read_rows import detect_flavour, read_image_rows
from tomodrgn.io.star import find_optics_block, find_particle_block, read_star, write_star
from tomodrgn.io.tomograms import read_tilt_series_star
from tomodrgn.io.write_relion5 import write_stack_subset

__all__ = [
    "FLAVOURS",
    "ParticleSeries",
    "StackSet",
    "detect_flavour",
    "read_particles",
    "read_tilt_series_star",
    "write_particle_subset",
]

FLAVOURS = ("warp", "relion5", "nextpyp")


def read_particles(
    star: str | Path,
    *,
    pixel_size: float | None = None,
    source: str = "auto",
    datadir: str | Path | None = None,
    tomogram_pixel_size: float | None = None,
    tilt_series_star: str | Path | None = None,
    tomograms_star: str | Path | None = None,
    ctf: str = "auto",
    dose: str = "auto",
) -> ParticleSeries:
    """Read a particle STAR file: one row per tilt image (Warp/M, RELION 5 rows, nextPYP) or a RELION 5 /
    WarpTools 2-D stack set (an optimisation set, or its particles STAR).

    ``source``: "auto" | "warp" | "relion5" | "nextpyp". ``pixel_size`` (Å, positive) overrides the STAR's and the
    MRC headers' values; without it the STAR's is used, else the first stack's MRC header (see
    :mod:`tomodrgn.io.pixel_size`).
    ``datadir``: folder of the stacks (default: the STAR's folder and, for RELION projects, its parents).
    ``tomogram_pixel_size`` (Å) scales ``_rlnCoordinateX/Y/Z`` of image-row files (default: ``pixel_size``).
    ``tilt_series_star``: RELION 5 tomograms / tilt-series STAR with dose and tilt angles for per-image-row files
    whose rows lack them. ``tomograms_star``: the tomograms STAR of a 2-D stack set read from its particles STAR
    (default: found through an ``optimisation_set.star`` or a ``tomograms.star`` next to it).
    2-D stack sets: see ``docs/architecture.md`` ("RELION 5 / WarpTools 2-D stack sets: geometry").
    ``ctf``: "auto" (the CTF columns; a file without any is taken as free of any CTF, CTF ≡ 1, with one warning; one
    with only some is refused naming the missing), "none" (CTF ≡ 1, the columns not read: ``--no-ctf``,
    ``--ctf none``) or "unused" (read when complete, else CTF ≡ 1 silently: commands that use no CTF).
    ``dose``: "auto" (a file without dose columns gets dose 0, i.e. no dose weighting or dose mask, with one warning)
    or "unused" (the same, silently). ``has_ctf`` / ``has_dose`` of the result say which.
    Unsupported: RELION 4/5 3-D pseudo-subtomograms.
    """
    check_choice(ctf, CTF_CHOICES, "ctf")
    check_choice(dose, DOSE_CHOICES, "dose")
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, "pixel_size")
    path = Path(star).absolute()
    if source not in ("auto", *FLAVOURS):
        raise InputError(f"unknown source {source!r}; expected one of auto, {', '.join(FLAVOURS)}")
    blocks = read_star(path)
    if is_optimisation_set(blocks) or (source in ("auto", "relion5") and is_stack_set(blocks)):
        return read_stack_set(
            path, blocks, pixel_size=pixel_size, datadir=datadir, tomograms_star=tomograms_star, ctf=ctf, dose=dose
        )
    image_block = find_particle_block(blocks, path)
    flavour = detect_flavour(blocks[image_block], path) if source == "auto" else source
    return read_image_rows(
        path,
        blocks,
        image_block,
        find_optics_block(blocks),
        flavour,
        pixel_size=pixel_size,
        datadir=datadir,
        tomogram_pixel_size=tomogram_pixel_size,
        tilt_series_star=tilt_series_star,
        ctf=ctf,
        dose=dose,
    )


def write_particle_subset(series: ParticleSeries, particle_indices, out_star: str | Path) -> Path:
    """Write the chosen particles (indices or a boolean mask; all their tilt images) in the input's flavour.

    Every block and column is kept; only the image block loses the rows of other particles (file order kept).
    A RELION 5 / WarpTools 2-D stack set is written as an optimisation set at ``out_star`` with
    ``<stem>_particles.star`` and ``<stem>_tomograms.star`` next to it
    (:func:`~tomodrgn.io.read_relion5.write_stack_subset`).
    Stack names in ``_rlnImageName`` are kept as written when they still resolve from ``out_star``'s folder (or the
    ``datadir`` used to read); otherwise they are rewritten as absolute paths, so the subset stays readable.
    """
    out_star = Path(out_star).absolute()
    particle_indices = np.asarray(particle_indices).reshape(-1)
    if particle_indices.dtype == bool:
        if len(particle_indices) != series.n_particles:
            raise InputError(f"particle mask has {len(particle_indices)} entries for {series.n_particles} particles")
        particle_indices = np.flatnonzero(particle_indices)
    particle_indices = particle_indices.astype(np.int64)
    if len(particle_indices) and (particle_indices.min() < 0 or particle_indices.max() >= series.n_particles):
        raise InputError(f"particle index out of range 0..{series.n_particles - 1}")
    chosen = np.zeros(series.n_particles, dtype=bool)
    chosen[particle_indices] = True
    if series.stack_set is not None:
        return write_stack_subset(series.stack_set, series.blocks, np.flatnonzero(chosen), out_star, series.datadir)
    rows = np.sort(np.concatenate([series.image_indices[p] for p in np.flatnonzero(chosen)] or [np.empty(0, int)]))
    subset = series.images.iloc[rows].reset_index(drop=True).copy()
    if "rlnImageName" in subset:
        names = subset["rlnImageName"].astype(str).to_numpy()
        new = []
        cache: dict[str, str] = {}
        for name, absolute in zip(names, series.stack_path[rows]):
            idx, at, stack = name.rpartition("@") if "@" in name else ("", "", name)
            if stack not in cache:
                found = resolve_stack(stack, out_star.parent, series.datadir)
                cache[stack] = stack if found is not None and str(found) == absolute else absolute
            new.append(f"{idx}{at}{cache[stack]}")
        subset["rlnImageName"] = new
    blocks = dict(series.blocks)
    blocks[series.image_block] = subset
    return write_star(blocks, out_star)


def star_flavour(star: str | Path) -> str | None:
    """Our reader flavour of a particle STAR file ("warp", "relion5", "nextpyp"), or None when it cannot be read
    (the reading command then says why)."""
    path = Path(star)
    try:
        blocks = read_star(path)
        if is_optimisation_set(blocks) or is_stack_set(blocks):
            return "relion5"
        return detect_flavour(blocks[find_particle_block(blocks, path)], path)
    except (InputError, OSError):
        return None
