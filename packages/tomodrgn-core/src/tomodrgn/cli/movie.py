"""``tomodrgn movie``: a GIF/MP4 of iso-surfaces: a turn around one map, or a traversal's maps in order."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._progress import progress_bar


def _color(text: str) -> tuple[float, float, float]:
    """'#rrggbb' or 'r,g,b' (0–1) → RGB in 0–1."""
    t = text.strip()
    try:
        if t.startswith("#") and len(t) == 7:
            rgb = tuple(int(t[i : i + 2], 16) / 255 for i in (1, 3, 5))
        else:
            rgb = tuple(float(c) for c in t.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 1 for c in rgb):
        raise argparse.ArgumentTypeError(f"colour {text!r}: give #rrggbb or r,g,b with values 0-1")
    return rgb  # type: ignore[return-value]


def cmd_movie(args: argparse.Namespace) -> None:
    from tomodrgn import api

    with progress_bar("rendering frames", "frame", leave=False) as progress:
        movie = api.volume_movie(
            args.volumes, args.output, n_frames=args.frames, turn=args.turn, elevation=args.elevation, fps=args.fps,
            size=args.size, sigma=args.sigma, mass_kda=args.mass, bounce=args.bounce, overwrite=args.overwrite,
            progress=progress, **({"color": args.color} if args.color else {}),
        )  # fmt: skip
    what = "a turn around 1 volume" if len(movie.volumes) == 1 else f"{len(movie.volumes)} volumes"
    print(f"{movie.path}: {movie.n_frames} frames at {movie.fps:g} fps ({what}, iso level {movie.level:.4g})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "movie",
        help="GIF/MP4 of shaded iso-surfaces: a turn around one map, or a traversal's maps in order (no display)",
        description="One .mrc: the view turns around it. Several .mrc, or a folder (a traversal's vol_*.mrc, e.g."
        " RUN/pc_traversal.E/pc1): one frame per map, in order, at one iso level for all. Seen as ChimeraX shows"
        " a map by default (x right, y up, z towards you), tilted by --elevation.",
    )
    p.add_argument("volumes", type=Path, nargs="+", help=".mrc volume(s), or a folder of them")
    p.add_argument("-o", "--output", type=Path, required=True, help="movie file: .gif or .mp4 (needs imageio-ffmpeg)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing movie file")
    p.add_argument("--frames", type=int, default=36, help="frames of the turn around one volume")
    p.add_argument(
        "--turn", type=float, default=None, help="degrees the view turns (default 360 for one volume, else 0)"
    )
    p.add_argument("--elevation", type=float, default=20.0, help="view tilt in degrees (the top towards you)")
    p.add_argument("--bounce", action="store_true", help="play a series forward and then back")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second")
    p.add_argument("--size", type=int, default=384, help="frame width and height in pixels (rounded up to 16)")
    p.add_argument("--sigma", type=float, default=2.0, help="iso level: mean + SIGMA standard deviations")
    p.add_argument("--mass", type=float, default=None, help="iso level enclosing this mass (kDa) per volume")
    p.add_argument(
        "--color", type=_color, default=None, help="surface colour, #rrggbb or r,g,b (0-1; default light blue)"
    )
    p.set_defaults(func=cmd_movie)
