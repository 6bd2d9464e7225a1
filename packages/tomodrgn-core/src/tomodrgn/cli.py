"""The ``tomodrgn`` command line: argument parsing only; every command calls :mod:`tomodrgn.api`.

Run ``tomodrgn COMMAND --help``. Under ``torchrun``: ``torchrun --nproc_per_node N -m tomodrgn.cli train_vae ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

import numpy as np

TRAIN_HELP = {
    "zdim": "latent dimension",
    "enc_arch_a": "encoder 'nodes x layers': the reference-frame encoder's MLP, or encoder A (per tilt)",
    "enc_arch_b": "encoder B architecture, 'nodes x layers' (per-tilt encoder)",
    "dec_arch": "decoder architecture, 'nodes x layers'",
    "encoder": "reference-frame (tilt pixels placed in the volume frame by their poses: learns classes in far fewer"
    " epochs) or per-tilt (the published tomoDRGN encoder)",
    "z_all_tilts": "write latents from an encoder pass over all tilts (default: yes for the reference-frame encoder)",
    "pooling": "pooling of per-tilt embeddings (per-tilt encoder): concatenate, max, mean, median, set",
    "enc_mask": "radius (px) of the encoder's input pixels (default D/2; reference-frame: min(D/4, 12))",
    "n_tilts": "tilts sampled per particle (default: the minimum tilt count)",
    "sequential_tilts": "use the first n tilts in file order instead of a random subset each time",
    "batch_size": "particles per (global) batch",
    "beta": "KL weight (default 1/(zdim + n_tilts·D²))",
    "box_size": "Fourier-crop images to this box size (pixels) on the fly",
    "pixel_size": "pixel size in Å when the STAR file has none",
    "backend": "lattice-mask kernels: auto (Triton on CUDA), torch or triton",
    "device": "auto, cpu or cuda[:i]",
    "checkpoint_every": "write a checkpoint every N epochs",
    "dose_filter": "multiply decoded slices by the exposure filter exp(-N/2Ne)",
    "amp": "mixed precision on GPU",
    "preload": "load all images into RAM (default: memory-mapped, read lazily)",
    "invert": "invert image contrast",
}


def _add_train_options(p: argparse.ArgumentParser, mode: str) -> None:
    from tomodrgn.training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "mode" or (
            mode == "homogeneous"
            and f.name in ("zdim", "encoder", "z_all_tilts", "enc_arch_a", "enc_arch_b", "pooling")
        ):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "int | None" → int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_ = TRAIN_HELP.get(f.name, "") + f" (default: {f.default})"
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            p.add_argument(flag, type=kind, default=f.default, help=help_)
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in -o")


def _train_config(args: argparse.Namespace, mode: str):
    from tomodrgn.training.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig(mode=mode, **values)


def _parse_z(args: argparse.Namespace, zdim: int) -> np.ndarray | None:
    if args.zfile:
        return np.atleast_2d(np.loadtxt(args.zfile) if str(args.zfile).endswith(".txt") else np.load(args.zfile))
    if args.z:
        return np.asarray(args.z, dtype=np.float32).reshape(-1, zdim)
    if args.path:
        from tomodrgn.analysis.latent import path_between

        z = np.atleast_2d(np.loadtxt(args.path) if str(args.path).endswith(".txt") else np.load(args.path))
        return path_between(z[0], z[1], args.n_points)
    return None


# --------------------------------------------------------------------------------------------- command handlers
def cmd_simulate(args):
    from tomodrgn import api

    sim = api.simulate(
        args.outdir,
        preset=args.preset,
        n_particles=args.n_particles,
        box_size=args.D,
        pixel_size=args.pixel_size,
        n_tilts=args.n_tilts,
        dose_per_tilt=args.dose_per_tilt,
        snr=args.snr,
        drop_tilts=args.drop_tilts,
        seed=args.seed,
    )
    print(f"wrote {sim.star_path} ({len(sim.particle_names)} particles, D={sim.box_size}, {sim.pixel_size:.3f} Å/px)")
    print(f"ground truth: {', '.join(str(p) for p in sim.volume_paths)}; labels {sim.labels_path}")
    if args.tomogram:
        for name in sim.tomogram_names:
            print(f"tomogram: {api.simulate_tomogram(sim, name)}")


def _cmd_train(args, mode: str):
    from tomodrgn import api

    res = api.train(args.star, args.outdir, _train_config(args, mode), resume=args.resume)
    state = "stopped early" if res.stopped else "finished"
    print(f"{state}: {res.epochs_completed} epochs, final loss {res.final_loss}, checkpoint {res.checkpoint}")


def cmd_train_vae(args):
    _cmd_train(args, "vae")


def cmd_train_nn(args):
    _cmd_train(args, "homogeneous")


def cmd_eval_vol(args):
    from tomodrgn import api

    model = api.load_model(args.run, args.epoch)
    z = _parse_z(args, model.zdim) if model.zdim else None
    if model.zdim and z is None:
        sys.exit("eval_vol: give z with --z, --zfile or --path (this model has a latent space)")
    paths = api.decode_volumes(args.run, z, args.outdir, epoch=args.epoch, prefix=args.prefix)
    print(f"wrote {len(paths)} volume(s) to {args.outdir} ({model.pixel_size:.3f} Å/px)")


def cmd_eval_images(args):
    from tomodrgn import api

    mu, logvar = api.embed_particles(args.run, args.star, n_tilts=args.n_tilts, epoch=args.epoch)
    out = Path(args.output)
    np.save(out, mu)
    np.save(out.with_name(out.stem + ".logvar.npy"), logvar)
    print(f"wrote z for {len(mu)} particles to {out}")


def cmd_analyze(args):
    from tomodrgn import api

    res = api.analyze(args.run, epoch=args.epoch, k=args.ksample, umap=not args.no_umap, outdir=args.outdir)
    print(f"analysis written to {res.outdir}; report: {res.report}")


def cmd_filter_star(args):
    from tomodrgn import api

    indices = labels = None
    if args.indices:
        indices = api.read_index_list(args.indices)
    elif args.labels:
        labels = np.load(args.labels) if args.labels.endswith(".npy") else np.loadtxt(args.labels, dtype=np.int64)
    else:
        sys.exit("filter_star: give --indices FILE or --labels FILE with --keep")
    out = api.filter_star(args.star, args.output, indices=indices, labels=labels, keep=args.keep, invert=args.exclude)
    print(f"wrote {out}")


def cmd_fsc(args):
    from tomodrgn import api

    v1, px = api.read_mrc(args.vol1)
    v2, _ = api.read_mrc(args.vol2)
    mask = api.soft_mask(v1) if args.mask else None
    freq, curve = api.fsc(v1 * mask if mask is not None else v1, v2 * mask if mask is not None else v2, px)
    for f, c in zip(freq, curve):
        print(f"{f:.4f}\t{c:.4f}")
    for t in (0.5, 0.143):
        print(f"# FSC={t}: {api.resolution_at(freq, curve, t):.2f} Å")


def cmd_demo(args):
    from tomodrgn import api

    res = api.run_demo(
        args.outdir,
        preset=args.preset,
        n_particles=args.n_particles,
        box_size=args.D,
        epochs=args.epochs,
        snr=args.snr,
        seed=args.seed,
    )
    print(res.summary())


# ------------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from tomodrgn import __version__
    from tomodrgn.demo import DEMO_DEFAULTS

    parser = argparse.ArgumentParser(
        prog="tomodrgn", description="tomoDRGN: heterogeneity from sub-tomogram tilt series"
    )
    parser.add_argument("--version", action="version", version=f"tomodrgn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="make a ground-truth tilt-series particle dataset")
    p.add_argument("outdir", type=Path)
    p.add_argument("--preset", default="4-class", choices=["homogeneous", "4-class", "continuous"])
    p.add_argument("--n-particles", type=int, default=1000)
    p.add_argument("-D", type=int, default=32, help="box size (pixels)")
    p.add_argument("--pixel-size", type=float, default=None, help="Å/px (default: a 419.2 Å box)")
    p.add_argument("--n-tilts", type=int, default=41)
    p.add_argument("--dose-per-tilt", type=float, default=3.0, help="e⁻/Å² per tilt")
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--drop-tilts", type=int, default=0, help="each particle loses up to this many tilts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tomogram", action="store_true", help="also write small tomograms with the particles pasted")
    p.set_defaults(func=cmd_simulate)

    for name, mode, func, help_ in (
        ("train_vae", "vae", cmd_train_vae, "train a heterogeneous model (VAE)"),
        ("train_nn", "homogeneous", cmd_train_nn, "train a homogeneous model (decoder only)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("star", type=Path, help="particle image-series STAR file")
        p.add_argument("-o", "--outdir", type=Path, required=True, help="run directory")
        _add_train_options(p, mode)
        p.set_defaults(func=func)

    p = sub.add_parser("eval_vol", help="decode volumes from z")
    p.add_argument("run", type=Path, help="training run directory")
    p.add_argument("-o", "--outdir", type=Path, required=True)
    p.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: latest)")
    p.add_argument("--z", type=float, nargs="+", help="z values (zdim each)")
    p.add_argument("--zfile", help=".txt or .npy with one z per row")
    p.add_argument("--path", help=".txt/.npy with two z: decode --n-points along the line between them")
    p.add_argument("--n-points", type=int, default=10)
    p.add_argument("--prefix", default="vol_")
    p.set_defaults(func=cmd_eval_vol)

    p = sub.add_parser("eval_images", help="embed particles with a trained model")
    p.add_argument("run", type=Path)
    p.add_argument("star", type=Path)
    p.add_argument("-o", "--output", default="z.eval.npy")
    p.add_argument(
        "--n-tilts",
        type=int,
        default=None,
        help="embed from this many tilts per particle (default: all when the run wrote all-tilt latents, else the"
        " training value)",
    )
    p.add_argument("--epoch", type=int, default=None)
    p.set_defaults(func=cmd_eval_images)

    p = sub.add_parser("analyze", help="PCA/UMAP, k-means, volumes, report for a training run")
    p.add_argument("run", type=Path)
    p.add_argument("--epoch", type=int, default=None)
    p.add_argument("--ksample", type=int, default=20, help="k-means clusters")
    p.add_argument("--no-umap", action="store_true")
    p.add_argument("-o", "--outdir", type=Path, default=None)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("filter_star", help="write a STAR subset (same flavour, all columns) for re-refinement")
    p.add_argument("star", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--indices", help="text file of particle indices (0-based)")
    p.add_argument("--labels", help=".npy/.txt of one label per particle (with --keep)")
    p.add_argument("--keep", type=int, nargs="+", help="label values to keep")
    p.add_argument("--exclude", action="store_true", help="write the complement of the selection")
    p.set_defaults(func=cmd_filter_star)

    p = sub.add_parser("fsc", help="Fourier shell correlation of two maps")
    p.add_argument("vol1")
    p.add_argument("vol2")
    p.add_argument("--mask", action="store_true", help="apply the soft mask of vol1 to both")
    p.set_defaults(func=cmd_fsc)

    p = sub.add_parser("demo", help="simulate the 4-class dataset, train, analyse and compare with ground truth")
    p.add_argument("--outdir", type=Path, default=Path("demo_output"))
    p.add_argument("--preset", default="4-class", choices=["4-class", "continuous", "homogeneous"])
    p.add_argument("--n-particles", type=int, default=DEMO_DEFAULTS["n_particles"])
    p.add_argument("-D", type=int, default=DEMO_DEFAULTS["box_size"])
    p.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"])
    p.add_argument("--snr", type=float, default=DEMO_DEFAULTS["snr"], help="SNR of the 0° image (harder: lower)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
