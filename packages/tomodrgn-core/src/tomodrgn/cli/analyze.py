"""``tomodrgn analyze`` (PCA/UMAP, k-means, volumes, report of a run) and ``tomodrgn fsc``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_analysis_outdir, add_device_option, add_epoch_option, add_hand_options


def cmd_analyze(args: argparse.Namespace) -> None:
    from tomodrgn import api

    res = api.analyze(
        args.run,
        epoch=args.epoch,
        k=args.ksample,
        umap=not args.no_umap,
        outdir=args.outdir,
        overwrite=args.overwrite,
        flip_hand=args.flip_hand,
        device=args.device,
    )
    print(f"analysis written to {res.outdir}; report: {res.report}")


def cmd_fsc(args: argparse.Namespace) -> None:
    from tomodrgn import api

    v1, px = api.read_mrc(args.vol1)
    v2, _ = api.read_mrc(args.vol2)
    mask = api.soft_mask(v1) if args.mask else None
    freq, curve = api.fsc(v1 * mask if mask is not None else v1, v2 * mask if mask is not None else v2, px)
    for f, c in zip(freq, curve):
        print(f"{f:.4f}\t{c:.4f}")
    for t in (0.5, 0.143):
        print(f"# FSC={t}: {api.resolution_at(freq, curve, t):.2f} Å")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="PCA/UMAP, k-means, volumes, report for a training run")
    p.add_argument("run", type=Path, help="training run directory")
    add_epoch_option(p, "the latents and model analysed")
    p.add_argument("--ksample", type=int, default=20, help="number of k-means clusters (a volume and a STAR each)")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding of z (PCA only; faster)")
    add_analysis_outdir(p, "RUN/analyze.E")
    add_device_option(p)
    add_hand_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("fsc", help="Fourier shell correlation of two maps")
    p.add_argument("vol1", help="first map (.mrc)")
    p.add_argument("vol2", help="second map (.mrc, same box and pixel size)")
    p.add_argument("--mask", action="store_true", help="apply the soft mask of vol1 to both")
    p.set_defaults(func=cmd_fsc)
