"""Movies of volumes without a display: a turn around one map, or a series of maps (a latent traversal) played in
order, as GIF (Pillow) or MP4 (imageio with imageio-ffmpeg), rendered by :mod:`tomodrgn.export.render`.

One iso level and one frame for the whole movie (computed over all its volumes), so what changes between frames is
the structure, not the threshold. A thin bar along the bottom edge shows the position in the movie. The file is
written under a temporary name and renamed when complete: an interrupted run leaves no half-written movie.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomodrgn.analysis.surfaces import DEFAULT_SIGMA, sigma_level, surface_threshold
from tomodrgn.export.render import DEFAULT_COLOR, render_surface, surface_radius, view_rotation
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc
from tomodrgn.io.output_dir import check_output_file

MOVIE_SUFFIXES = (".gif", ".mp4")
TURN_FRAMES = 36  # frames of a full turn around one volume
BAR_ROWS = 3  # height (pixels) of the position bar along the bottom edge


@dataclass
class Movie:
    """A written movie: ``path``, ``n_frames``, ``fps``, the iso ``level`` used (volume units) and the
    ``volumes`` it shows (paths, in frame order before any bounce; empty for a movie of arrays)."""

    path: Path
    n_frames: int
    fps: float
    level: float
    volumes: list[Path]


def movie_volumes(inputs: Sequence[str | Path]) -> list[Path]:
    """The volume files of a movie: ``.mrc`` files as given, a folder standing for its ``vol_*.mrc`` (a traversal's
    output) or, without those, its ``*.mrc``, in name order. Raises :class:`InputError` naming what is missing."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(item.glob("vol_*.mrc")) or sorted(item.glob("*.mrc"))
            if not found:
                raise InputError(f"{item}: folder holds no .mrc volume")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    if not paths:
        raise InputError("no volume given")
    return paths


def write_movie(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> int:
    """Write RGB frames (each (H, W, 3) uint8, all the same size) as ``path`` (.gif or .mp4); returns the frame count.

    MP4 (H.264, yuv420p) needs the ``imageio-ffmpeg`` package; its frames are padded (edge pixels repeated, at the
    right and bottom) to sides divisible by 16, which the encoder needs.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MOVIE_SUFFIXES:
        raise InputError(f"{path}: a movie is written as .gif or .mp4, not {path.suffix or 'a name without suffix'}")
    tmp = path.with_name(f".{path.stem}.partial{suffix}")
    try:
        n = _write_gif(frames, tmp, fps) if suffix == ".gif" else _write_mp4(frames, tmp, fps)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    if not images:
        raise InputError(f"{path}: no frames to write")
    duration = max(int(round(1000 / fps)), 20)  # ms; browsers slow down frames under 20 ms
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False)
    return len(images)


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 - the MP4 encoder imageio uses
    except ImportError as e:
        raise InputError(
            "writing MP4 needs the imageio-ffmpeg package: pip install imageio-ffmpeg (or write a .gif)"
        ) from e
    n = 0
    writer = imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=16)
    try:
        for frame in frames:
            writer.append_data(_pad_to_16(np.asarray(frame, dtype=np.uint8)))
            n += 1
    finally:
        writer.close()
    if n == 0:
        raise InputError(f"{path}: no frames to write")
    return n


def _pad_to_16(frame: np.ndarray) -> np.ndarray:
    pad = [(0, -n % 16) for n in frame.shape[:2]] + [(0, 0)] * (frame.ndim - 2)
    return np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame


def _with_bar(image: np.ndarray, k: int, n: int) -> np.ndarray:
    out = image.copy()
    width = out.shape[1] * (k + 1) // n
    out[-BAR_ROWS:, :width] = 160
    return out


def volume_movie(
    inputs: Sequence[str | Path],
    out: str | Path,
    n_frames: int = TURN_FRAMES,
    turn: float | None = None,
    elevation: float = 20.0,
    fps: float = 10.0,
    size: int = 384,
    sigma: float = DEFAULT_SIGMA,
    mass_kda: float | None = None,
    bounce: bool = False,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Movie:
    """Render and write a movie of the volume files in ``inputs`` (see :func:`movie_volumes`) to ``out``
    (.gif / .mp4): :func:`render_movie` of the volumes read, at the pixel size of their headers."""
    out = check_output_file(out, overwrite)
    _check_movie_args(out, size, n_frames, fps)
    paths = movie_volumes(inputs)
    vols, pixel_size = [], 0.0
    for p in paths:
        vol, ps = read_mrc(p)
        if vol.ndim != 3 or (vols and vol.shape != vols[0].shape):
            raise InputError(f"{p}: shape {vol.shape}; the movie's volumes must be 3-D and alike ({paths[0]})")
        vols.append(vol)
        pixel_size = pixel_size or ps
    movie = render_movie(
        np.stack(vols), out, pixel_size or None, n_frames=n_frames, turn=turn, elevation=elevation, fps=fps,
        size=size, sigma=sigma, mass_kda=mass_kda, bounce=bounce, color=color, overwrite=True, progress=progress,
    )  # fmt: skip
    movie.volumes = paths
    return movie


def _check_movie_args(out: Path, size: int, n_frames: int, fps: float) -> None:
    if out.suffix.lower() not in MOVIE_SUFFIXES:
        raise InputError(f"-o {out}: a movie is written as .gif or .mp4")
    if size < 16 or n_frames < 1 or fps <= 0:
        raise InputError(f"movie size {size} px (>= 16), frames {n_frames} (>= 1) and fps {fps:g} (> 0) out of range")


def _warn_if_nothing_visible(vols: np.ndarray, sigma: float) -> None:
    """One warning when mean + ``sigma`` SD of ``vols`` (n, D, D, D) is at or above their maximum: no voxel reaches
    the iso level, so the movie would show no surface (the level is kept just under the maximum: a speck at most)."""
    level, lo, hi = sigma_level(vols, sigma), float(vols.min()), float(vols.max())
    if level < hi:
        return
    std = float(vols.std())
    below = (hi - float(vols.mean())) / std if std > 0 else 0.0
    maps = "the map" if len(vols) == 1 else f"the {len(vols)} maps"
    message = (
        f"iso level {level:.4g} (mean + {sigma:g} SD) is above the maximum of {maps} (values {lo:.4g} to {hi:.4g}): "
        f"the movie shows no surface; give a lower --sigma (below {below:.2f} here; default {DEFAULT_SIGMA:g}) or "
        "--mass"
    )
    warnings.warn(message, UserWarning, stacklevel=3)


def render_movie(
    volumes: np.ndarray,
    out: str | Path,
    pixel_size: float | None = None,
    n_frames: int = TURN_FRAMES,
    turn: float | None = None,
    elevation: float = 20.0,
    fps: float = 10.0,
    size: int = 384,
    sigma: float = DEFAULT_SIGMA,
    mass_kda: float | None = None,
    bounce: bool = False,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Movie:
    """Render and write a movie of ``volumes`` ((D, D, D) or (n, D, D, D) [z, y, x], voxel ``pixel_size`` Å) to
    ``out`` (.gif / .mp4), without a display.

    One volume: a turn of ``turn`` degrees (default 360) in ``n_frames`` frames. Several (a traversal): one frame
    each, in order (``bounce``: then back again), the view turning by ``turn`` degrees over the series (default 0).
    The iso level is mean + ``sigma``·std over all the volumes, or the level enclosing ``mass_kda`` of protein per
    volume (needs ``pixel_size``); ``elevation`` (degrees) tilts the view so the top is seen. ``size`` (pixels,
    square) is rounded up to a multiple of 16. ``progress(done, total)`` is called after each frame.
    """
    out = check_output_file(out, overwrite)
    _check_movie_args(out, size, n_frames, fps)
    vols = np.asarray(volumes, dtype=np.float32)
    vols = vols[None] if vols.ndim == 3 else vols
    if vols.ndim != 4 or len(vols) == 0:
        raise InputError(f"{out}: a movie needs 3-D volumes, got an array of shape {np.shape(volumes)}")
    n_vol = len(vols)
    level = surface_threshold(vols, pixel_size, mass_kda * n_vol if mass_kda else None, sigma)
    if mass_kda is None:
        _warn_if_nothing_visible(vols, sigma)
    radius = max(surface_radius(v, level) for v in vols)
    if n_vol == 1:
        order = [0] * n_frames
        turn = 360.0 if turn is None else turn
        step = turn / n_frames  # a full turn does not repeat its first frame
    else:
        order = list(range(n_vol)) + (list(range(n_vol - 2, 0, -1)) if bounce else [])
        turn = 0.0 if turn is None else turn
        step = turn / max(len(order) - 1, 1)
    size = int(-(-size // 16) * 16)
    total = len(order)

    def frames():
        for k, i in enumerate(order):
            rot = view_rotation(k * step, elevation)
            image = render_surface(vols[i], level, rot, size, pixel_size or 1.0, color, radius=radius).image
            yield _with_bar(image, k, total)
            if progress is not None:
                progress(k + 1, total)

    n = write_movie(frames(), out, fps)
    return Movie(out, n, fps, level, [])
