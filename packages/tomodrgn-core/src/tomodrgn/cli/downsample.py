"""``tomodrgn downsample``: Fourier-crop every particle stack to a smaller box, with a STAR of the same flavour."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import DATADIR_HELP, PIXEL_SIZE_HELP, add_box_size, add_tomograms_star


def cmd_downsample(args: argparse.Namespace) -> None:
    from tomodrgn import api

    out = api.downsample_particles(
        args.star,
        args.box_size,
        args.outdir,
        datadir=args.datadir,
        pixel_size=args.pixel_size,
        source=args.source,
        overwrite=args.overwrite,
        tomograms_star=args.tomograms_star,
    )
    print(f"wrote {out} (box {args.box_size} px)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downsample", help="Fourier-crop all particle stacks to a smaller box (new stacks + STAR of the same flavour)"
    )
    p.add_argument(
        "star",
        type=Path,
        help="particle image-series STAR file (Warp/M or nextPYP), or a RELION 5 / WarpTools 2-D stack set (its "
        "optimisation set or particles STAR)",
    )
    add_box_size(p, "new box size (px): even, ≥ 8, smaller than the stacks'; required", metavar="NEW_BOX")
    p.add_argument("-o", "--outdir", type=Path, help="folder for the new stacks and STAR; required")
    p.add_argument("--datadir", type=Path, default=None, help=DATADIR_HELP)
    p.add_argument("--pixel-size", type=float, default=None, help=PIXEL_SIZE_HELP)
    p.add_argument(
        "--source",
        default="auto",
        choices=["auto", "warp", "relion5", "nextpyp"],
        help="STAR flavour (default: detected)",
    )
    add_tomograms_star(p)
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier downsampled set in -o")
    p.set_defaults(func=cmd_downsample)
