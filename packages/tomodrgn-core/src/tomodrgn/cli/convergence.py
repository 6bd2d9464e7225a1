"""``tomodrgn convergence_vae`` and ``tomodrgn convergence_nn``: is the run converged, and from which epoch."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_analysis_outdir, add_device_option, add_hand_options


def cmd_convergence_vae(args: argparse.Namespace) -> None:
    from tomodrgn import api

    thresholds = {"knn_preservation": args.min_knn, "cca_mean": args.min_cca}
    if not args.no_volumes:
        thresholds["volume_cc"] = args.min_volume_cc
    res = api.convergence_vae(
        args.run, outdir=args.outdir, k=args.k, n_volumes=args.n_volumes, thresholds=thresholds,
        decode=not args.no_volumes, seed=args.seed, device=args.device, overwrite=args.overwrite,
        ground_truth=args.ground_truth,
    )  # fmt: skip
    print(res.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(res.verdict)
    print(f"report: {res.report}")


def cmd_convergence_nn(args: argparse.Namespace) -> None:
    from tomodrgn import api

    res = api.convergence_nn(
        args.run, outdir=args.outdir, reference=args.reference, mask=args.mask, device=args.device,
        overwrite=args.overwrite, flip_hand=args.flip_hand, max_epoch=args.max_epoch,
    )  # fmt: skip
    print(res.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(res.verdict)
    print(f"report: {res.report}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convergence_vae",
        help="latent and volume stability across a VAE run's saved epochs, loss curves and a verdict",
        description="Compares consecutive saved epochs: k-NN neighbourhood preservation and canonical correlation of"
        " z, Procrustes fit, k-means ARI, and CC / FSC of volumes decoded for fixed particles; writes"
        " convergence.csv, PNG plots, verdict.txt and report.md.",
    )
    p.add_argument("run", type=Path, help="training run directory")
    add_analysis_outdir(p, "RUN/convergence")
    p.add_argument(
        "--k", type=int, default=None, help="nearest neighbours per particle for the preservation score (default 5%%)"
    )
    p.add_argument("--n-volumes", type=int, default=5, help="particles whose volumes are compared across epochs")
    p.add_argument("--min-knn", type=float, default=0.4, help="stable when k-NN preservation ≥ this")
    p.add_argument("--min-cca", type=float, default=0.9, help="stable when the mean canonical correlation ≥ this")
    p.add_argument("--min-volume-cc", type=float, default=0.95, help="stable when the mean volume CC ≥ this")
    p.add_argument("--no-volumes", action="store_true", help="latent criteria only (no decoding)")
    p.add_argument("--seed", type=int, default=0, help="seed of the particles whose volumes are compared")
    p.add_argument(
        "--ground-truth",
        type=Path,
        nargs="+",
        default=None,
        help="known maps (same box): each epoch's compared volumes' best CC with them (ground_truth_cc.csv)",
    )
    add_device_option(p)
    p.set_defaults(func=cmd_convergence_vae)

    p = sub.add_parser(
        "convergence_nn",
        help="FSC between consecutive checkpoints' maps of a homogeneous run (and to a reference map)",
    )
    p.add_argument("run", type=Path, help="training run directory (train_nn)")
    add_analysis_outdir(p, "RUN/convergence_nn")
    p.add_argument("--reference", type=Path, default=None, help="reference map (.mrc, same box) for FSC curves")
    p.add_argument(
        "--mask",
        nargs="?",
        const="soft",
        default=False,
        choices=("soft", "sphere", "tight"),
        help="mask every FSC: soft (alone: a soft mask of the last map), sphere (the inscribed ball) or"
        " tight (the last map ≥ ½ its 99.99th percentile)",
    )
    p.add_argument("--max-epoch", type=int, default=None, help="compare the checkpoints of epochs < N only")
    add_device_option(p)
    add_hand_options(p)
    p.set_defaults(func=cmd_convergence_nn)
