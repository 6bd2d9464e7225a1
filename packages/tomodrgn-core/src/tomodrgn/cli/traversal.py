"""``tomodrgn pc_traversal`` and ``tomodrgn graph_traversal``: volume series along paths in latent space."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_analysis_outdir, add_device_option, add_epoch_option, add_hand_options


def cmd_pc_traversal(args: argparse.Namespace) -> None:
    from tomodrgn import api

    res = api.pc_traversal(
        args.run, epoch=args.epoch, outdir=args.outdir, pcs=args.pc, n_points=args.n_points,
        lo_percentile=args.lo, hi_percentile=args.hi, device=args.device, overwrite=args.overwrite,
        flip_hand=args.flip_hand,
    )  # fmt: skip
    for pc, t in res.items():
        print(f"PC{pc}: {len(t.volume_paths)} volumes in {t.outdir}")


def cmd_graph_traversal(args: argparse.Namespace) -> None:
    from tomodrgn import api

    t = api.graph_traversal(
        args.run,
        args.anchors,
        epoch=args.epoch,
        outdir=args.outdir,
        k=args.max_neighbors,
        device=args.device,
        overwrite=args.overwrite,
        flip_hand=args.flip_hand,
    )
    print(f"path through particles {t.particles.tolist()}: {len(t.volume_paths)} volumes in {t.outdir}")


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument(
        "run", type=Path, help="training run directory (or a z file, tomoDRGN's z.N.train.pkl: the path in z only)"
    )
    add_epoch_option(p, "the latents and model traversed")
    add_analysis_outdir(p, f"RUN/{name}.E")
    add_device_option(p)
    add_hand_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pc_traversal", help="volumes along principal components of z (vol_NNN.mrc, z values, plot)")
    _common(p, "pc_traversal")
    p.add_argument("--pc", type=int, nargs="+", default=[1, 2], help="principal components (1-based)")
    p.add_argument("--n-points", type=int, default=10, help="volumes per PC")
    p.add_argument("--lo", type=float, default=5.0, help="start at this percentile of the PC coordinate")
    p.add_argument("--hi", type=float, default=95.0, help="end at this percentile of the PC coordinate")
    p.set_defaults(func=cmd_pc_traversal)

    p = sub.add_parser(
        "graph_traversal",
        help="volumes along the shortest path through the particles' k-NN graph in z between anchor particles",
    )
    _common(p, "graph_traversal")
    p.add_argument(
        "--anchors",
        type=int,
        nargs="+",
        required=True,
        help="particle indices (0-based rows of z: the run's training particles in STAR order)",
    )
    p.add_argument("--max-neighbors", type=int, default=10, help="k of the k-nearest-neighbour graph")
    p.set_defaults(func=cmd_graph_traversal)
