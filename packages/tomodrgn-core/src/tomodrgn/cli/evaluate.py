"""``tomodrgn eval_vol`` (volumes from z) and ``tomodrgn eval_images`` (z from particles)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tomodrgn.cli._options import (
    add_box_size,
    add_device_option,
    add_epoch_option,
    add_hand_options,
    add_tomograms_star,
)


def _parse_z(args: argparse.Namespace, zdim: int):
    import numpy as np

    from tomodrgn import api

    InputError = api.InputError

    def load(path):
        z = np.atleast_2d(api.read_latents(path))
        if z.shape[-1] != zdim:
            raise InputError(f"{path}: each z needs {zdim} values (the model's zdim), got {z.shape[-1]} per row")
        return z

    if args.zfile:
        return load(args.zfile)
    if args.z:
        if len(args.z) % zdim:
            raise InputError(
                f"--z: {len(args.z)} value(s) given; the model has zdim {zdim}, so give a multiple of {zdim}"
            )
        return np.asarray(args.z, dtype=np.float32).reshape(-1, zdim)
    if args.path:
        z = load(args.path)
        if len(z) < 2 or args.n_points < 1:
            raise InputError(f"--path {args.path}: needs two z rows and --n-points ≥ 1")
        return api.path_between(z[0], z[1], args.n_points)
    return None


def cmd_eval_vol(args: argparse.Namespace) -> None:
    from tomodrgn import api

    model = api.load_model(args.run, args.epoch, device=args.device)
    z = _parse_z(args, model.zdim) if model.zdim else None
    if model.zdim and z is None:
        raise api.InputError("give z with --z, --zfile or --path (this model has a latent space)")
    paths = api.decode_volumes(
        args.run, z, args.outdir, epoch=args.epoch, prefix=args.prefix, overwrite=args.overwrite,
        flip_hand=args.flip_hand, box_size=args.box_size, lowpass=args.lowpass, invert=args.invert,
        device=args.device,
    )  # fmt: skip
    print(f"wrote {len(paths)} volume(s) to {args.outdir} ({model.pixel_size:.3f} Å/px)")


def cmd_eval_images(args: argparse.Namespace) -> None:
    import numpy as np

    from tomodrgn import api

    out = Path(args.output)
    logvar_out = out.with_name(out.stem + ".logvar.npy")
    for path in (out,) if out.suffix == ".pkl" else (out, logvar_out):
        api.check_output_file(path, args.overwrite)
    mu, logvar = api.embed_particles(
        args.run,
        args.star,
        n_tilts=args.n_tilts,
        epoch=args.epoch,
        first=args.first,
        ind=args.ind,
        tomograms_star=args.tomograms_star,
        datadir=args.datadir,
    )
    if out.suffix == ".pkl":  # as cryoDRGN / tomoDRGN write z: two pickles, μ then log σ²
        api.write_latents_pickle(out, mu, logvar)
    else:
        np.save(out, mu)
        np.save(logvar_out, logvar)
    print(f"wrote z for {len(mu)} particles to {out}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval_vol", help="decode volumes from z")
    p.add_argument("run", type=Path, nargs="?", help="training run directory")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="output folder (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    add_epoch_option(p)
    p.add_argument(
        "--z", type=float, nargs="+", help="latent coordinates of the volumes to decode: zdim numbers per volume"
    )
    p.add_argument("--zfile", help=".txt, .npy or .pkl (cryoDRGN / tomoDRGN z.pkl) with one z per row")
    p.add_argument("--path", help=".txt/.npy with two z: decode --n-points along the line between them")
    p.add_argument("--n-points", type=int, default=10, help="volumes along --path")
    p.add_argument("--prefix", default="vol_", help="volume file names: PREFIXNNN.mrc")
    add_box_size(p, "Fourier-crop the volumes to this box (px, even; pixel size × D/N)", default=None)
    p.add_argument("--lowpass", type=float, default=None, help="low-pass the volumes to this resolution (Å)")
    p.add_argument("--invert", action="store_true", help="write the volumes with inverted contrast")
    add_device_option(p)
    add_hand_options(p)
    p.set_defaults(func=cmd_eval_vol)

    p = sub.add_parser("eval_images", help="embed particles with a trained model")
    p.add_argument("run", type=Path, help="training run directory")
    p.add_argument("star", type=Path, nargs="?", help="particle STAR file")
    p.add_argument(
        "-o",
        "--output",
        default="z.eval.npy",
        help="z file: .npy (log σ² beside it as NAME.logvar.npy) or .pkl (μ then log σ², as tomoDRGN writes)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--n-tilts",
        type=int,
        default=None,
        help="embed from this many tilts per particle (default: all when the run wrote all-tilt latents, else the"
        " training value)",
    )
    add_epoch_option(p, "the model that embeds")
    p.add_argument("--first", type=int, default=None, help="embed the first N particles only (STAR particle order)")
    p.add_argument("--ind", default=None, help="embed the particles of this index list (0-based; text, .npy or .pkl)")
    p.add_argument(
        "--datadir",
        type=Path,
        default=None,
        help="folder of the image stacks, where the STAR's image paths are relative to another folder (default: the"
        " STAR's folder; for the training STAR, the run's --datadir)",
    )
    add_tomograms_star(p)
    p.set_defaults(func=cmd_eval_images)
