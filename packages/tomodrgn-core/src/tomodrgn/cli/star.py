"""``tomodrgn filter_star``: STAR subsets in the input's flavour, for re-refinement."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_tomograms_star


def cmd_filter_star(args: argparse.Namespace) -> None:
    from tomodrgn import api

    indices = labels = None
    if args.ind:
        indices = api.read_index_list(args.ind)
    elif args.labels:
        if not args.keep:
            raise api.InputError(f"--labels {args.labels} needs --keep LABEL [LABEL ...]: the label values to keep")
        labels = api.read_labels(args.labels)
    else:
        raise api.InputError("give --ind FILE, or --labels FILE with --keep")
    out = api.filter_star(
        args.star,
        args.output,
        indices=indices,
        labels=labels,
        keep=args.keep,
        invert=args.exclude,
        labels_name=f"--labels {args.labels}",
        tomograms_star=args.tomograms_star,
        datadir=args.datadir,
    )
    print(f"wrote {out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("filter_star", help="write a STAR subset (same flavour, all columns) for re-refinement")
    p.add_argument("star", type=Path, help="particle STAR file (any flavour we read), or a 2-D stack set")
    p.add_argument("-o", "--output", type=Path, required=True, help="the STAR file to write (a 2-D stack set: its"
                   " optimisation set, with NAME_particles.star and NAME_tomograms.star beside it)")  # fmt: skip
    p.add_argument("--ind", help="particle indices (0-based): text (one per line), .npy, or .pkl (cryoDRGN ind.pkl)")
    p.add_argument("--indices", dest="ind", help=argparse.SUPPRESS)  # the spelling of earlier versions
    p.add_argument("--labels", help="one label per particle, .txt/.npy/.pkl (cryoDRGN labels.pkl), with --keep")
    p.add_argument(
        "--keep", type=int, nargs="+", help="label values to keep (e.g. cluster numbers of analyze's labels.npy)"
    )
    p.add_argument("--exclude", action="store_true", help="write the complement of the selection")
    p.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="folder of the image stacks, where the STAR's image paths are relative to another folder: used to re-point"
        " them for the output's folder (the stacks are not read; default: the STAR's folder)",
    )
    add_tomograms_star(p)
    p.set_defaults(func=cmd_filter_star)
