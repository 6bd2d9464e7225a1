"""Writing subsets of RELION 5 / WarpTools 2-D stack sets (read by :mod:`tomodrgn.io.read_relion5`): the
optimisation set, the chosen particles' rows with every block and column of the input, and the tomograms STAR, with
paths re-pointed so that they resolve from the new folder (RELION's project-relative form where it still works)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.particle_series import StackSet
from tomodrgn.io.star import Block, write_star
from tomodrgn.io.star_paths import moved_image_names
from tomodrgn.io.tomograms import find_relative


def _star_path(target: Path, base: Path) -> str:
    """``target`` as written in a RELION STAR: relative to the working directory (RELION's project folder) when it
    lies under it and resolves from ``base`` or its parents that way too; else absolute."""
    target = target.resolve()
    try:
        rel = target.relative_to(Path.cwd().resolve())
    except ValueError:
        return str(target)
    found = find_relative(str(rel), base)
    return str(rel) if found is not None and found == target else str(target)


def stack_subset_files(out_star: Path) -> tuple[Path, Path]:
    """The particles and tomograms STARs that :func:`write_stack_subset` writes next to the optimisation set
    ``out_star``: ``<stem>_particles.star`` and ``<stem>_tomograms.star`` (``optimisation_set`` left out of the
    stem)."""
    stem = out_star.stem.replace("optimisation_set", "").strip("_")
    return (out_star.with_name(f"{stem}_particles.star" if stem else "particles.star"),
            out_star.with_name(f"{stem}_tomograms.star" if stem else "tomograms.star"))  # fmt: skip


def write_stack_subset(
    ss: StackSet, blocks: dict[str, Block], particles: np.ndarray, out_star: str | Path, datadir: Path | None = None
) -> Path:
    """Write particles ``particles`` (sorted indices) of a 2-D stack set (``blocks``: its particles STAR's blocks)
    as a 2-D stack set: the optimisation set at ``out_star`` and, next to it (:func:`stack_subset_files`), the
    particles STAR (every block and column of the input, the chosen rows) and the input's tomograms STAR. Stack and
    STAR paths are re-pointed for the new folder (:mod:`tomodrgn.io.star_paths`); no stack is opened."""
    out_star = Path(out_star).absolute()
    folder = out_star.parent
    particles_out, tomograms_out = stack_subset_files(out_star)
    rows = ss.particle_rows[np.asarray(particles, dtype=np.int64)]
    subset = blocks[ss.particle_block].iloc[rows].reset_index(drop=True).copy()
    if "rlnImageName" in subset:
        names = subset["rlnImageName"].astype(str)
        subset["rlnImageName"] = moved_image_names(names, ss.particles_star, folder, datadir)
    write_star({**blocks, ss.particle_block: subset}, particles_out)
    write_star(moved_tomograms_blocks(ss, folder), tomograms_out)
    entries = {"rlnTomoParticlesFile": _star_path(particles_out, folder),
               "rlnTomoTomogramsFile": _star_path(tomograms_out, folder)}  # fmt: skip
    return write_star(moved_optimisation_blocks(ss, entries, folder), out_star)


def moved_tomograms_blocks(ss: StackSet, folder: Path) -> dict[str, Block]:
    """The tomograms STAR's blocks of a set written into ``folder``: tilt-series STAR paths that no longer resolve
    from there made absolute (or relative to the working directory)."""
    tomo_blocks = dict(ss.tomograms_blocks)
    glob_name = next(k for k, v in tomo_blocks.items() if isinstance(v, pd.DataFrame) and "rlnTomoName" in v)
    glob = tomo_blocks[glob_name].copy()
    if "rlnTomoTiltSeriesStarFile" in glob:
        rewritten = []
        for name in glob["rlnTomoTiltSeriesStarFile"].astype(str):
            found = find_relative(name, ss.tomograms_star.parent)
            rewritten.append(_star_path(found, folder) if found is not None else name)
        glob["rlnTomoTiltSeriesStarFile"] = rewritten
    tomo_blocks[glob_name] = glob
    return tomo_blocks


def moved_optimisation_blocks(ss: StackSet, entries: dict[str, str], folder: Path) -> dict[str, Block]:
    """The optimisation set's blocks for a set written into ``folder``: ``entries`` (particles / tomograms STAR)
    replace the input's; its other files (trajectories, references …) are re-pointed from ``folder``. A set read
    from its particles STAR gets an optimisation set of ``entries`` alone."""
    if ss.optimisation_blocks is not None:
        opt = {k: (dict(v, **entries) if isinstance(v, dict) and "rlnTomoParticlesFile" in v else v)
               for k, v in ss.optimisation_blocks.items()}  # fmt: skip
        for block in opt.values():
            if isinstance(block, dict):
                for key, value in list(block.items()):  # other files of the set (trajectories, references …)
                    if key not in entries and isinstance(value, str) and value.endswith((".star", ".mrc")):
                        found = find_relative(value, ss.optimisation_set.parent)
                        block[key] = _star_path(found, folder) if found is not None else value
    else:
        opt = {"": entries}
    return opt
