"""ChimeraX scripts that place particle volumes at their positions and orientations in a tomogram.

Like tomoDRGN's ``subtomo2chimerax``: for each particle the script opens a volume (one .mrc per particle or one
per cluster) and sets its model position with ``view matrix models #N,r11,r12,r13,tx,r21,…,tz`` — a 3×4 matrix
mapping the volume's model coordinates (Å, origin at the box corner as written by ``io.mrc.write_mrc``) to the
tomogram frame (Å). With the particle's RELION matrix ``A`` (reference → tomogram frame, see
:mod:`tomodrgn.analysis.spatial`), box centre ``c = (D/2)·pixel_size`` on every axis and particle position ``p``:
``x_tomo = A @ (x_model − c) + p``, i.e. rotation ``A`` and translation ``p − A @ c``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import mrc_pixel_size

# tab10-like palette (hex), cycled by cluster label
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def placement_matrix(rotation: np.ndarray, position: np.ndarray, box_size: int, pixel_size: float) -> np.ndarray:
    """3×4 model→tomogram matrix [A | p − A c] for one particle (Å); see the module docstring."""
    a = np.asarray(rotation, dtype=np.float64)
    c = np.full(3, box_size / 2 * pixel_size)
    return np.hstack([a, (np.asarray(position, dtype=np.float64) - a @ c)[:, None]])


def chimerax_script(
    volume_paths: Sequence[str | Path],
    positions: np.ndarray,
    rotations: np.ndarray,
    box_size: int,
    pixel_size: float | None = None,
    labels: np.ndarray | None = None,
    level: float | None = None,
    first_model: int = 1,
    colors: Sequence[str] | None = None,
) -> str:
    """Text of a ChimeraX ``.cxc`` script placing particle i's volume ``volume_paths[i]``.

    ``positions`` (n, 3) Å in the tomogram; ``rotations`` (n, 3, 3) RELION matrices; ``box_size`` D of the
    volumes; ``pixel_size`` Å (default: read from the first volume's header); ``labels`` (n,) integer clusters
    colour the models (``PALETTE[label % 10]``, the same in every script); ``level`` sets the display threshold.
    Models are numbered from ``first_model``. ``colors`` (n,) ChimeraX colours (e.g. ``#rrggbb``) override
    ``labels`` (see :func:`quantity_colors`).
    """
    positions = np.asarray(positions, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    n = len(volume_paths)
    if positions.shape != (n, 3) or rotations.shape != (n, 3, 3):
        raise InputError(
            f"chimerax_script: {n} volumes but positions {positions.shape} and rotations {rotations.shape}"
        )
    if pixel_size is None:
        pixel_size = mrc_pixel_size(volume_paths[0])
    lines = [f"# tomodrgn: {n} particles, box {box_size} px, {pixel_size:g} Å/px; positions in Å"]
    for i in range(n):
        model = first_model + i
        m = placement_matrix(rotations[i], positions[i], box_size, pixel_size)
        lines.append(f"open {Path(volume_paths[i]).as_posix()}")
        lines.append(f"view matrix models #{model}," + ",".join(f"{round(v, 6) + 0.0:.6f}" for v in m.ravel()))
        opts = []
        if level is not None:
            opts.append(f"level {level:g}")
        if colors is not None:
            opts.append(f"color {colors[i]}")
        elif labels is not None:
            opts.append(f"color {PALETTE[int(labels[i]) % len(PALETTE)]}")
        if opts:
            lines.append(f"volume #{model} " + " ".join(opts))
    lines.append("view")
    return "\n".join(lines) + "\n"


def write_chimerax_scripts(
    outdir: str | Path,
    volume_paths: Sequence[str | Path],
    positions: np.ndarray,
    rotations: np.ndarray,
    tomograms: Sequence[str],
    box_size: int,
    pixel_size: float | None = None,
    labels: np.ndarray | None = None,
    level: float | None = None,
    colors: Sequence[str] | None = None,
) -> list[Path]:
    """One ``<tomogram>.cxc`` per tomogram under ``outdir`` (particles of different tomograms are in different
    coordinate systems). Returns the written paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tomos = np.asarray(tomograms, dtype=object)
    written = []
    for t in dict.fromkeys(tomos):
        idx = np.nonzero(tomos == t)[0]
        text = chimerax_script(
            [volume_paths[i] for i in idx],
            np.asarray(positions)[idx],
            np.asarray(rotations)[idx],
            box_size,
            pixel_size,
            None if labels is None else np.asarray(labels)[idx],
            level,
            colors=None if colors is None else [colors[i] for i in idx],
        )
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(t))
        path = outdir / f"{safe}.cxc"
        path.write_text(text)
        written.append(path)
    return written


def quantity_colors(values: np.ndarray, cmap: str = "viridis") -> list[str]:
    """Hex colours (n,) for per-particle ``values`` on a matplotlib colormap, scaled from their min to their max."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return [to_hex(c) for c in colormaps[cmap](t)]


def marker_script(positions: np.ndarray, radius: float, colors: Sequence[str] | None = None) -> str:
    """Text of a ChimeraX ``.cxc`` script with one marker (``radius`` Å) at each particle position (n, 3) Å in the
    tomogram, as tomoDRGN's ``subtomo2chimerax --mode markers``; ``colors`` (n,) ChimeraX colours."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    lines = [f"# tomodrgn: {len(positions)} particle markers, positions in Å"]
    for i, p in enumerate(positions):
        color = f" color {colors[i]}" if colors is not None else ""
        lines.append(f"marker #1 position {p[0]:.2f},{p[1]:.2f},{p[2]:.2f} radius {radius:g}{color}")
    lines.append("view")
    return "\n".join(lines) + "\n"
