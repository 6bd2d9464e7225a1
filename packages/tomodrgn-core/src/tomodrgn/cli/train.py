"""``tomodrgn train_vae`` and ``tomodrgn train_nn``: options generated from :class:`TrainConfig`'s fields."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

from tomodrgn import api
from tomodrgn.cli._options import DATADIR_HELP, PIXEL_SIZE_HELP, add_reference_options

TRAIN_HELP = {
    "zdim": "latent dimension",
    "enc_arch_a": "encoder 'nodes x layers': the reference-frame encoder's MLP, or encoder A (per tilt)",
    "enc_arch_b": "encoder B architecture, 'nodes x layers' (per-tilt encoder)",
    "dec_arch": "decoder architecture, 'nodes x layers'",
    "embed_dim": "dimension of each tilt's embedding from encoder A (per-tilt encoder)",
    "epochs": f"epochs to train ({api.EPOCH_COUNTING})",
    "lr": "learning rate of the AdamW optimiser (per step)",
    "weight_decay": "AdamW weight decay (per step, × lr)",
    "beta_warmup_epochs": "epochs over which the KL weight β ramps linearly from 0 to --beta",
    "feat_sigma": "scale σ of the decoder's random Gaussian Fourier features (cryoDRGN's feat_sigma), as a fraction of"
    " the box's D/2 frequencies",
    "n_features": "number of the decoder's Fourier features (default 3·D/2)",
    "phase_flip": "the encoder sees images multiplied by sign(CTF)",
    "seed": "random seed (weights, tilt sampling, batches)",
    "num_workers": "data-loader processes that read images (0: in this process)",
    "encoder": "reference-frame (tilt pixels placed in the volume frame by their poses: learns classes in far fewer"
    " epochs) or per-tilt (the published tomoDRGN encoder)",
    "z_all_tilts": "write latents from an encoder pass over all tilts (default: yes for the reference-frame encoder)",
    "pooling": "pooling of per-tilt embeddings (per-tilt encoder): concatenate, max, mean, median, set",
    "enc_mask": "radius (px) of the encoder's input pixels (default: D/2; reference-frame: min(D/4, 12))",
    "n_tilts": "tilts sampled per particle (default: the minimum tilt count)",
    "sequential_tilts": "use the first n tilts in file order instead of a random subset each time",
    "batch_size": "particles per (global) batch, or auto: the largest batch whose trial step fits --memory-limit"
    " (logged in train.log, saved in config.json as the number chosen)",
    "memory_limit": "GiB this process may use, for --batch-size auto (default: the GPU's free memory on CUDA, the"
    " available RAM on CPU)",
    "beta": "KL weight β (default: 1/(zdim + n_tilts·D²))",
    "box_size": "Fourier-crop images to this box size (px) on the fly (default: the stacks' box)",
    "pixel_size": PIXEL_SIZE_HELP,
    "backend": "lattice-mask kernels: auto (Triton on CUDA), torch or triton",
    "device": "auto, cpu, cuda[:i] or mps",
    "checkpoint_every": "write a checkpoint every N epochs (and after the last)",
    "max_steps": "end the run after N optimiser steps in all: the epoch in progress is the last (its checkpoint and"
    " latents written); e.g. to time a large set",
    "dose_filter": "multiply decoded slices by the exposure filter exp(-N/2Ne)",
    "ctf": "model the CTF from the STAR's columns; --no-ctf: take the images as free of any CTF (simulations, data"
    " CTF-corrected upstream); a STAR without CTF columns is taken so anyway, with a warning",
    "amp": "mixed precision: bf16 autocast of the networks on CUDA and on CPUs with native bf16 (loss, reductions and"
    " optimiser state fp32); elsewhere fp32. --no-amp: fp32 everywhere",
    "preload": "load all images into RAM (default: memory-mapped, read lazily)",
    "datadir": DATADIR_HELP,
    "invert": "invert image contrast",
    "first": "train on the first N particles only (STAR particle order; the first N of --ind when given)",
    "ind": "train on the particles of this index list (0-based; text, .npy or a cryoDRGN .pkl; e.g. .keep.txt)",
    "tomograms_star": "tomograms STAR of a RELION 5 / WarpTools 2-D stack set given by its particles STAR (not needed"
    " with the optimisation set)",
    "val_tilts": "hold K tilt images of every particle out of training (seeded, spread over the tilt range) and"
    " report their error each epoch (val_loss in train.log, heldout.N.csv)",
    "window": "soft circular real-space window on the images (0.75–0.95 of the box radius)",
    "decoder_envelope": "per-shell scale of the decoder's output: measured (the data's signal amplitude per Fourier"
    " shell, from two half-set back-projections before training), fixed (1 + 9·exp(-r²/8), r in px) or none",
    "refine_poses": "learn corrections of the STAR's poses with the map: per particle a rotation and a 3-D origin,"
    " per tilt image a 2-D shift (poses.E.npz in the run folder); one process only",
    "refine_poses_after": "epochs trained with the STAR's poses before the corrections are learned",
    "pose_prior_deg": "prior width of each particle's rotation correction, in degrees (rms angle)",
    "pose_prior_px": "prior width of each particle's 3-D origin correction, px of the stacks per axis",
    "tilt_shift_prior_px": "prior width of each tilt image's 2-D shift correction, px of the stacks per axis",
    "pose_lr": "SparseAdam learning rate of the pose corrections, in prior widths per step",
    "weight_average_steps": "save, for evaluation, an exponential moving average of the weights over about this many"
    " optimiser steps (runs of at least 10× as many steps; 0: off)",
}
LATENT_ONLY = ("zdim", "encoder", "z_all_tilts", "enc_arch_a", "enc_arch_b", "pooling", "embed_dim", "enc_mask", "beta",
               "beta_warmup_epochs")  # fmt: skip
SHORT_FLAGS = {"box_size": "-D"}  # the box is -D/--box-size in every command


def _batch_size(text: str) -> int | str:
    """``--batch-size``: a number of particles or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of particles or auto, not {text!r}") from None


def _add_train_options(p: argparse.ArgumentParser, mode: str) -> None:
    TrainConfig = api.TrainConfig
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "mode" or (mode == "homogeneous" and f.name in LATENT_ONLY):
            continue
        flags = [SHORT_FLAGS[f.name]] if f.name in SHORT_FLAGS else []
        flags.append("--" + f.name.replace("_", "-"))
        kind = hints[f.name]
        if f.name == "batch_size":
            kind = _batch_size
        elif isinstance(kind, types.UnionType):  # "int | None" → int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        help_ = TRAIN_HELP[f.name]  # every option has its help (tests/core/test_cli_vocabulary.py)
        if kind is bool:
            p.add_argument(*flags, action=argparse.BooleanOptionalAction, default=f.default, help=help_)
        else:
            p.add_argument(*flags, type=kind, default=f.default, help=help_)
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in -o")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a used -o folder: first delete the old run's files (config.json, train.log, weights*.pt,"
        " z*.npy, poses.*.npz, analyze*/); other files are kept",
    )


def train_config(args: argparse.Namespace, mode: str):
    """The :class:`TrainConfig` of parsed train_vae / train_nn arguments."""
    TrainConfig = api.TrainConfig
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if values.get("tomograms_star") is not None:  # recorded in config.json: absolute, readable from anywhere
        values["tomograms_star"] = str(Path(values["tomograms_star"]).absolute())
    return TrainConfig(mode=mode, **values)


def _cmd_train(args: argparse.Namespace, mode: str) -> None:
    config = train_config(args, mode)  # options and the output folder are checked before torch is loaded
    api.check_run_dir(args.outdir, args.resume, args.overwrite)
    if not args.star.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(args.star))

    reference, particles = None, args.star
    if args.reference is not None:  # read and checked against the training grid before training, not after
        reference = api.load_reference(args.reference, args.reference_pixel_size)
        particles, reference = api.reference_for_training(
            args.star, config, reference, args.outdir if args.resume else None
        )

    res = api.train(particles, args.outdir, config, resume=args.resume, overwrite=args.overwrite)
    if not res.history:  # a resumed run that had already finished
        print(
            f"nothing to do: {args.outdir} has finished its {res.epochs_completed} epochs (checkpoint "
            f"{res.checkpoint}); resume with a larger --epochs to train on"
        )
        return
    state = "stopped early" if res.stopped else "finished"
    loss = "n/a" if res.final_loss is None else f"{res.final_loss:.5f}"
    print(f"{state}: {res.epochs_completed} epochs, final loss {loss}, checkpoint {res.checkpoint}")
    if reference is not None:
        check = api.check_run_against_reference(args.outdir, reference)
        print("\n".join(check.lines()))


def cmd_train_vae(args: argparse.Namespace) -> None:
    _cmd_train(args, "vae")


def cmd_train_nn(args: argparse.Namespace) -> None:
    _cmd_train(args, "homogeneous")


def register(sub: argparse._SubParsersAction) -> None:
    for name, mode, func, help_ in (
        ("train_vae", "vae", cmd_train_vae, "train a heterogeneous model (VAE)"),
        ("train_nn", "homogeneous", cmd_train_nn, "train a homogeneous model (decoder only)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("star", type=Path, help="particle image-series STAR file")
        p.add_argument("-o", "--outdir", type=Path, required=True, help="run directory")
        _add_train_options(p, mode)
        add_reference_options(p)
        p.set_defaults(func=func)
