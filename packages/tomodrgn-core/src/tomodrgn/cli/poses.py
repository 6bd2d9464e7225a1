"""``tomodrgn export_poses``: a ``--refine-poses`` run's refined poses written into its training STAR."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_epoch_option


def cmd_export_poses(args: argparse.Namespace) -> None:
    from tomodrgn import api

    out = api.export_poses(args.run, args.output, epoch=args.epoch, overwrite=args.overwrite)
    print(f"wrote {out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export_poses",
        help="write a --refine-poses run's training STAR (same flavour, all columns) with its refined poses",
    )
    p.add_argument("run", type=Path, help="training run directory (train_nn / train_vae --refine-poses)")
    add_epoch_option(p, "the pose corrections exported (poses.E.npz)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the STAR file to write (a 2-D stack set: its"
                   " optimisation set, with NAME_particles.star and NAME_tomograms.star beside it)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_export_poses)
