"""Fourier-crop every particle stack of a STAR file to a smaller box and write a STAR of the same flavour.

The images are cropped with :func:`tomodrgn.physics.hartley.fourier_crop` (pixel size × D/box), stack by stack
through memory maps. The new STAR keeps every block and column; only ``_rlnImageName`` (the new stacks), the pixel
size columns, ``_rlnImageSize`` and shifts in pixels (``_rlnOriginX/Y``) change. Shifts in Å, poses, CTF, dose and
tomogram coordinates (``_rlnCoordinateX/Y/Z``, in tomogram voxels) are unchanged. The STAR rewrite is one function
per flavour (:data:`STAR_REWRITERS`).
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


def _target_names(series: ParticleSeries) -> dict[str, str]:
    """New stack name (relative to the output folder) of each source stack (resolved path), in file order.

    A relative name as written in the STAR is kept (``particles/TS_1_001.mrcs``); absolute names or names that leave
    their folder become ``stacks/<file name>`` (numbered when two stacks would share a name).
    """
    written = series.images["rlnImageName"].astype(str).to_numpy()
    targets: dict[str, str] = {}
    taken: set[str] = set()
    for name, source in zip(written, series.stack_path):
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
    series: ParticleSeries, targets: dict[str, str], box: int, pixel_size: float
) -> dict[str, Block]:
    """Blocks of the downsampled STAR for one-row-per-tilt-image flavours (Warp/M, nextPYP)."""
    blocks = {k: v.copy() if isinstance(v, pd.DataFrame) else dict(v) for k, v in series.blocks.items()}
    images = blocks[series.image_block]
    images["rlnImageName"] = [f"{i + 1}@{targets[s]}" for i, s in zip(series.stack_index, series.stack_path)]
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
    return blocks


# flavour → function writing the blocks of the downsampled STAR (add one per flavour)
STAR_REWRITERS: dict[str, Callable[[ParticleSeries, dict[str, str], int, float], dict[str, Block]]] = {
    "warp": _rewrite_image_series,
    "nextpyp": _rewrite_image_series,
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
) -> Path:
    """Fourier-crop all stacks of ``star`` to ``box_size`` px into ``outdir``; returns the new STAR's path.

    ``box_size``: even, ≥ 8 and smaller than the stacks' box. The new pixel size is (pixel size) × D / box_size;
    ``pixel_size`` (Å) overrides the STAR's and the MRC headers' (see :func:`tomodrgn.io.particles.read_particles`,
    also for ``datadir`` and ``source``). Writes ``outdir/<star name>``, the stacks under ``outdir`` (relative names
    kept, e.g. ``particles/TS_1_001.mrcs``) and ``outdir/tomodrgn_downsample.json``. A folder that already holds a
    downsampled set (or any of the files to write) is refused unless ``overwrite``; the input files are never
    overwritten. ``progress(done, total)`` is called after each stack (a tqdm bar is shown too).
    """
    from tqdm.auto import tqdm

    box = _check_box(box_size)
    star = Path(star).absolute()
    outdir = Path(outdir).absolute()
    series = read_particles(star, pixel_size=pixel_size, source=source, datadir=datadir)
    if box >= series.box_size:
        raise InputError(f"new box size -D {box} must be smaller than the stacks' box {series.box_size}")
    rewrite = STAR_REWRITERS.get(series.flavour)
    if rewrite is None:
        raise InputError(f"{star}: downsampling {series.flavour} STAR files is not supported yet")

    targets = _target_names(series)
    out_star = outdir / star.name
    out_paths = [outdir / t for t in targets.values()] + [out_star]
    sources = {Path(s).resolve() for s in targets} | {star.resolve()}
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

    new_px = series.pixel_size * series.box_size / box
    outdir.mkdir(parents=True, exist_ok=True)
    items = list(targets.items())
    for done, (src, target) in enumerate(tqdm(items, desc=f"downsample to {box} px", unit="stack"), start=1):
        _crop_stack(src, outdir / target, box, new_px)
        if progress is not None:
            progress(done, len(items))
    write_star(rewrite(series, targets, box, new_px), out_star)
    manifest = {
        "source_star": str(star),
        "star": out_star.name,
        "box_size": box,
        "pixel_size": new_px,
        "source_box_size": series.box_size,
        "source_pixel_size": series.pixel_size,
        "stacks": list(targets.values()),
    }
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out_star
