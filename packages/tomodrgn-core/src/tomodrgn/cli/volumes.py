"""``tomodrgn analyze_volumes``: PCA and k-means of decoded volumes (volume space)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import add_analysis_outdir, add_device_option, add_epoch_option, add_hand_options
from tomodrgn.cli._progress import progress_bar


def cmd_analyze_volumes(args: argparse.Namespace) -> None:
    from tomodrgn import api

    mask = None if args.mask == "none" else args.mask
    with progress_bar("decoding volumes", "vol") as progress:
        res = api.analyze_volumes(
            args.run, epoch=args.epoch, outdir=args.outdir, mask=mask, device=args.device, n_volumes=args.n_volumes,
            sampling=args.sampling, n_components=args.n_pcs, k=args.ksample, n_pc_points=args.n_pc_points,
            seed=args.seed, overwrite=args.overwrite, flip_hand=args.flip_hand, resume=args.resume, progress=progress,
            volume_paths=api.volume_files(args.voldir) if args.voldir is not None else None,
        )  # fmt: skip
    evr = ", ".join(f"{r:.1%}" for r in res.pca.explained_variance_ratio)
    print(f"{len(res.sample_particles)} volumes; explained variance per PC: {evr}; report: {res.report}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze_volumes",
        help="decode volumes at many latent positions, PCA and k-means in volume space, cluster STARs, report",
    )
    p.add_argument("run", type=Path, nargs="?", help="training run directory")
    add_epoch_option(p, "the latents and model analysed")
    add_analysis_outdir(p, "RUN/analyze_volumes.E")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted call in the same folder (its volumes are kept)"
    )
    p.add_argument("--n-volumes", type=int, default=50, help="latent positions decoded (all particles: their count)")
    p.add_argument(
        "--voldir",
        type=Path,
        default=None,
        help="analyse the volumes of this folder instead of decoding: one per particle of the run, numbered in its"
        " particle order (vol_000.mrc, …: eval_vol RUN --zfile of the run's z)",
    )
    p.add_argument("--sampling", choices=("kmeans", "random"), default="kmeans", help="how positions are chosen")
    p.add_argument(
        "--mask",
        default="auto",
        help="mask .mrc, 'auto' (soft mask of the mean volume), 'sphere' (inscribed ball), 'tight' (the mean volume ≥"
        " ½ its 99.99th percentile) or 'none'",
    )
    p.add_argument("--n-pcs", type=int, default=3, help="volume principal components")
    p.add_argument("--ksample", type=int, default=5, help="k-means clusters in volume space")
    p.add_argument("--n-pc-points", type=int, default=5, help="volumes written along each volume PC")
    p.add_argument("--seed", type=int, default=0, help="random seed (the sampled latent positions, k-means)")
    add_device_option(p)
    add_hand_options(p)
    p.set_defaults(func=cmd_analyze_volumes)
