"""Fourier-crop every particle stack of a STAR file to a smaller box and write a STAR of the same flavour.

The images are cropped with :func:`tomodrgn.physics.hartley.fourier_crop` (pixel size × D/box), stack by stack
through memory maps. The new STAR keeps every block and column; only ``_rlnImageName`` (the new stacks), the pixel
size columns, ``_rlnImageSize`` and shifts in pixels (``_rlnOriginX/Y``) change. Shifts in Å, poses, CTF, dose and
tomogram coordinates (``_rlnCoordinateX/Y/Z``, in tomogram voxels) are unchanged. The STAR rewrite is one function
per flavour (:data:`STAR_REWRITERS`); RELION 5 / WarpTools 2-D stack sets also get their tomograms STAR (copied:
it describes the tilt series, ``_rlnTomoTiltSeriesPixelSize`` included) and an optimisation set naming both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import mmap_mrc, write_mrc
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.io.star import Block, find_optics_block, write_star
from tomodrgn.io.write_relion5 import moved_optimisation_blocks, moved_tomograms_blocks
from tomodrgn.physics.hartley import fourier_crop

MANIFEST = "tomodrgn_downsample.json"  # marks a folder that holds a downsampled set
MIN_BOX = 8
_CHUNK = 256  # images cropped at a time (bounds the memory of the input side)


def _check_box(box_size) -> int:
    if isinstance(box_size, bool) or not isinstance(box_size, (int, np.integer)):
        raise InputError(f"new box size -D must be an integer number of pixels, got {box_size!r}")
    box = int(box_size)
    if box % 2:
        raise InputError(f"new box size -D {box} must be even")
    if box < MIN_BOX:
        raise InputError(f"new box size -D {box} must be ≥ {MIN_BOX}")
    return box


def _written_stacks(series: ParticleSeries) -> list[tuple[str, str]]:
    """(stack name as written in the STAR, resolved path) of each image, or of each particle of a 2-D stack set."""
    ss = series.stack_set
    if ss is None:
        return list(zip(series.images["rlnImageName"].astype(str), series.stack_path))
    written = series.blocks[ss.particle_block]["rlnImageName"].astype(str).to_numpy()
    return [(written[ss.particle_rows[p]], series.stack_path[rows[0]])
            for p, rows in enumerate(series.image_indices) if len(rows)]  # fmt: skip


def _target_names(series: ParticleSeries) -> dict[str, str]:
    """New stack name (relative to the output folder) of each source stack (resolved path), in file order.

    A relative name as written in the STAR is kept (``particles/TS_1_001.mrcs``); absolute names or names that leave
    their folder become ``stacks/<file name>`` (numbered when two stacks would share a name).
    """
    targets: dict[str, str] = {}
    taken: set[str] = set()
    for name, source in _written_stacks(series):
        if source in targets:
            continue
        stack = PurePosixPath(name.partition("@")[2] if "@" in name else name)
        if stack.is_absolute() or ".." in stack.parts or not stack.parts:
            stack = PurePosixPath("stacks") / stack.name
        target, k = str(stack), 1
        while target in taken:
            target = str(stack.with_name(f"{stack.stem}_{k}{stack.suffix}"))
            k += 1
        targets[source] = target
        taken.add(target)
    return targets


def _crop_stack(source: str, target: Path, box: int, pixel_size: float) -> None:
    data = mmap_mrc(source)
    out = np.empty((len(data), box, box), dtype=np.float32)
    for start in range(0, len(data), _CHUNK):
        chunk = np.asarray(data[start : start + _CHUNK], dtype=np.float32)
        out[start : start + len(chunk)] = fourier_crop(chunk, box)
    del data  # unmaps the source before the next stack
    target.parent.mkdir(parents=True, exist_ok=True)
    write_mrc(target, out, pixel_size=pixel_size, is_stack=True)


def _rewrite_image_series(
    series: ParticleSeries, targets: dict[str, str], box: int, pixel_size: float, out_star: Path
) -> dict[str, dict[str, Block]]:
    """The downsampled STAR ``out_star`` for one-row-per-tilt-image flavours (Warp/M, nextPYP)."""
    blocks = {k: v.copy() if isinstance(v, pd.DataFrame) else dict(v) for k, v in series.blocks.items()}
    images = blocks[series.image_block]
    images["rlnImageName"] = [f"{i + 1}@{targets[s]}" for i, s in zip(series.stack_index, series.stack_path)]
    _rescale_pixel_columns(blocks, series, box, pixel_size)
    return {out_star.name: blocks}


def _rescale_pixel_columns(blocks: dict[str, Block], series: ParticleSeries, box: int, pixel_size: float) -> None:
    """Pixel size, box size and pixel shifts of the images in ``blocks`` (in place) for the new box."""
    scale = box / series.box_size
    tables = [df for df in blocks.values() if isinstance(df, pd.DataFrame)]
    has_detector = any("rlnDetectorPixelSize" in df for df in tables)
    has_pixel_size = has_detector or any("rlnImagePixelSize" in df for df in tables)
    for df in tables:
        if "rlnImagePixelSize" in df:
            df["rlnImagePixelSize"] = pixel_size
        if "rlnDetectorPixelSize" in df:  # with _rlnMagnification (RELION 3.0): pixel = detector µm · 1e4 / mag
            df["rlnDetectorPixelSize"] = pixel_size
        if "rlnMagnification" in df and has_detector:
            df["rlnMagnification"] = 10000.0
        if "rlnImageSize" in df:
            df["rlnImageSize"] = box
        for axis in "XY":
            if f"rlnOrigin{axis}" in df:  # pixels of the old box → pixels of the new one (Å columns stay)
                df[f"rlnOrigin{axis}"] = pd.to_numeric(df[f"rlnOrigin{axis}"]) * scale
    if not has_pixel_size:  # the pixel size came from the MRC headers or the caller: write it down
        blocks[find_optics_block(blocks) or series.image_block]["rlnImagePixelSize"] = pixel_size


def _rewrite_stack_set(
    series: ParticleSeries, targets: dict[str, str], box: int, pixel_size: float, out_star: Path
) -> dict[str, dict[str, Block]]:
    """A RELION 5 / WarpTools 2-D stack set: the particles STAR (``_rlnImageName`` → the new stacks; optics pixel
    size, image size and ``_rlnTomoSubtomogramBinning`` for the new box), the tomograms STAR (unchanged: its
    coordinates and ``_rlnTomoTiltSeriesPixelSize`` refer to the tilt series) and an optimisation set naming both.
    ``out_star`` (the input's name) is the optimisation set, or the particles STAR when that was the input."""
    ss = series.stack_set
    if ss is None:
        raise InputError(f"{series.star_path}: downsampling RELION 5 per-image-row STAR files is not supported yet")
    blocks = {k: v.copy() if isinstance(v, pd.DataFrame) else dict(v) for k, v in series.blocks.items()}
    part = blocks[ss.particle_block]
    names = part["rlnImageName"].astype(str).to_numpy(dtype=object)
    for p, rows in enumerate(series.image_indices):
        if len(rows):
            names[ss.particle_rows[p]] = targets[series.stack_path[rows[0]]]
    part["rlnImageName"] = names
    _rescale_pixel_columns(blocks, series, box, pixel_size)
    for df in blocks.values():
        if isinstance(df, pd.DataFrame) and "rlnTomoSubtomogramBinning" in df:  # image px / tilt-series px
            df["rlnTomoSubtomogramBinning"] = pd.to_numeric(df["rlnTomoSubtomogramBinning"]) * series.box_size / box

    star_name, folder = out_star.name, out_star.parent
    if ss.optimisation_set is not None:
        opt_name, particles_name = star_name, ss.particles_star.name
    else:
        particles_name = star_name
        opt_name = "optimisation_set.star" if star_name != "optimisation_set.star" else "tomodrgn_optimisation_set.star"
    tomograms_name = ss.tomograms_star.name
    if len({opt_name, particles_name, tomograms_name}) < 3:
        tomograms_name = f"{Path(particles_name).stem}_tomograms.star"
    entries = {"rlnTomoParticlesFile": particles_name, "rlnTomoTomogramsFile": tomograms_name}
    files = {
        particles_name: blocks,
        tomograms_name: moved_tomograms_blocks(ss, folder),
        opt_name: moved_optimisation_blocks(ss, entries, folder),
    }
    return {star_name: files[star_name], **files}


# flavour → function giving the STAR files of the downsampled set, {name in the output folder: blocks}, the STAR
# returned first (add one per flavour)
Rewriter = Callable[[ParticleSeries, dict[str, str], int, float, Path], dict[str, dict[str, Block]]]
STAR_REWRITERS: dict[str, Rewriter] = {
    "warp": _rewrite_image_series,
    "nextpyp": _rewrite_image_series,
    "relion5": _rewrite_stack_set,
}


def downsample_particles(
    star: str | Path,
    box_size: int,
    outdir: str | Path,
    *,
    datadir: str | Path | None = None,
    pixel_size: float | None = None,
    source: str = "auto",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    tomograms_star: str | Path | None = None,
) -> Path:
    """Fourier-crop all stacks of ``star`` to ``box_size`` px into ``outdir``; returns the new STAR's path.

    ``box_size``: even, ≥ 8 and smaller than the stacks' box. The new pixel size is (pixel size) × D / box_size;
    ``pixel_size`` (Å) overrides the STAR's and the MRC headers' (see :func:`tomodrgn.io.particles.read_particles`,
    also for ``datadir``, ``source`` and ``tomograms_star``). Writes ``outdir/<star name>``, the stacks under
    ``outdir`` (relative names kept, e.g. ``particles/TS_1_001.mrcs``) and ``outdir/tomodrgn_downsample.json``; a
    RELION 5 / WarpTools 2-D stack set (optimisation set or particles STAR) is written as one: particles STAR,
    tomograms STAR and optimisation set (:func:`_rewrite_stack_set`). A folder that already holds a
    downsampled set (or any of the files to write) is refused unless ``overwrite``; the input files are never
    overwritten. ``progress(done, total)`` is called after each stack (a tqdm bar is shown too).
    """
    from tqdm.auto import tqdm

    box = _check_box(box_size)
    star = Path(star).absolute()
    outdir = Path(outdir).absolute()
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"-o {outdir}: is a file, not a folder; give a folder for the new stacks and STAR")
    series = read_particles(star, pixel_size=pixel_size, source=source, datadir=datadir, tomograms_star=tomograms_star,
                            ctf="unused", dose="unused")  # fmt: skip
    if box >= series.box_size:
        raise InputError(f"new box size -D {box} must be smaller than the stacks' box {series.box_size}")
    rewrite = STAR_REWRITERS.get(series.flavour)
    if rewrite is None:
        raise InputError(f"{star}: downsampling {series.flavour} STAR files is not supported yet")

    targets = _target_names(series)
    out_star = outdir / star.name
    new_px = series.pixel_size * series.box_size / box
    stars = rewrite(series, targets, box, new_px, out_star)
    out_paths = [outdir / t for t in targets.values()] + [outdir / name for name in stars]
    sources = {Path(s).resolve() for s in targets} | {star.resolve()}
    if series.stack_set is not None:
        sources |= {series.stack_set.particles_star.resolve(), series.stack_set.tomograms_star.resolve()}
    clash = next((p for p in out_paths if p.resolve() in sources), None)
    if clash is not None:
        raise InputError(f"output folder {outdir}: {clash} would overwrite an input file; choose another -o")
    if not overwrite:
        existing = next((p for p in [outdir / MANIFEST, *out_paths] if p.exists()), None)
        if existing is not None:
            raise InputError(
                f"output folder {outdir} already holds a downsampled set ({existing} exists); choose another -o or "
                "pass --overwrite"
            )

    outdir.mkdir(parents=True, exist_ok=True)
    items = list(targets.items())
    for done, (src, target) in enumerate(tqdm(items, desc=f"downsample to {box} px", unit="stack"), start=1):
        _crop_stack(src, outdir / target, box, new_px)
        if progress is not None:
            progress(done, len(items))
    for name, blocks in stars.items():
        write_star(blocks, outdir / name)
    manifest = {
        "source_star": str(star),
        "star": out_star.name,
        "stars": list(stars),
        "box_size": box,
        "pixel_size": new_px,
        "source_box_size": series.box_size,
        "source_pixel_size": series.pixel_size,
        "stacks": list(targets.values()),
    }
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_star


def collect_one_stack(set_star_dir: str | Path, stack: str | Path, star_out: str | Path | None = None) -> Path | None:
    """Every image of the downsampled set in ``set_star_dir`` (written by :func:`downsample_particles`) in one stack
    ``stack``, in STAR row order, as the published tomoDRGN's ``downsample --output F.mrcs`` writes; with
    ``star_out``, an image-row STAR there whose ``_rlnImageName`` rows are ``NNNNNN@F.mrcs`` (the stack's name beside
    it). A RELION 5 / WarpTools set keeps its own STAR files (2-D stacks per particle): its optimisation set's path
    is returned instead. Returns the STAR written (None without ``star_out``)."""
    folder = Path(set_star_dir)
    record = json.loads((folder / MANIFEST).read_text())
    star = folder / record["star"]
    series = read_particles(star, ctf="unused", dose="unused")
    rows = np.arange(len(series.images))
    write_mrc(stack, series.read_images(rows), series.pixel_size, is_stack=True)
    if star_out is None:
        return None
    if series.flavour == "relion5":
        return star
    blocks = dict(series.blocks)
    name = next(k for k, v in blocks.items() if v is series.images)
    images = series.images.copy()
    images["rlnImageName"] = [f"{i + 1:06d}@{Path(stack).name}" for i in rows]
    blocks[name] = images
    return write_star(blocks, star_out)
