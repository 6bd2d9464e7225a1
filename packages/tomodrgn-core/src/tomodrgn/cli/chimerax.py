"""``tomodrgn subtomo2chimerax``: ChimeraX scripts placing volumes at the particles' positions and poses."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_device_option, add_epoch_option, add_outdir


def cmd_subtomo2chimerax(args: argparse.Namespace) -> None:
    from tomodrgn import api

    scripts = api.subtomo2chimerax(
        args.outdir, run_dir=args.run, star=args.star, epoch=args.epoch, labels=args.labels, volumes=args.volumes,
        color_by=args.color_by, level=args.level, device=args.device, overwrite=args.overwrite,
    )  # fmt: skip
    print(f"{len(scripts)} ChimeraX script(s): " + ", ".join(str(s) for s in scripts))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subtomo2chimerax",
        help="ChimeraX .cxc per tomogram placing one volume per particle (or per cluster) at its position and pose",
        description="Per cluster: --labels and --volumes (one .mrc per label). Per particle: a training RUN, each"
        " particle's own z decoded. Colours by label, or --color-by PCn / a file of per-particle values.",
    )
    add_outdir(p, "output folder for the .cxc scripts (and per-particle volumes); required", positional_alias=True)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    p.add_argument("--run", type=Path, default=None, help="training run (z, model, training STAR)")
    p.add_argument("--star", type=Path, default=None, help="particle STAR with positions (default: the run's)")
    add_epoch_option(p, "the latents and model of --run")
    p.add_argument("--labels", type=Path, default=None, help="cluster label per particle (.npy or text)")
    p.add_argument("--volumes", type=Path, nargs="+", default=None, help="one volume per cluster label, in order")
    p.add_argument("--color-by", default=None, help="PCn of z, or a .npy/.txt of per-particle values (viridis)")
    p.add_argument("--level", type=float, default=None, help="display threshold of the volumes")
    add_device_option(p)
    p.set_defaults(func=cmd_subtomo2chimerax)
