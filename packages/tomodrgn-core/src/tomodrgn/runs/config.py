"""Training configuration (a JSON-serialisable dataclass)."""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tomodrgn.io.errors import InputError
from tomodrgn.io.pixel_size import check_pixel_size
from tomodrgn.models.names import ENCODERS, POOLING_MODES, parse_arch
from tomodrgn.runs.create import atomic_write_bytes
from tomodrgn.runtime.device import check_device_spec


def option_name(field_name: str) -> str:
    """The command-line spelling of a :class:`TrainConfig` field: ``batch_size`` → ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def _number(cfg, name: str, kind: type, low: float | None, strict: bool = False, optional: bool = False) -> None:
    """InputError naming ``--option`` unless cfg.name is a finite ``kind`` ≥ low (> low when ``strict``)."""
    v = getattr(cfg, name)
    if v is None and optional:
        return
    ok_type = isinstance(v, numbers.Integral) if kind is int else isinstance(v, numbers.Real)
    if isinstance(v, bool) or not ok_type:
        raise InputError(f"{option_name(name)} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    if not math.isfinite(v):
        raise InputError(f"{option_name(name)} must be a finite number, got {v}")
    if low is not None and (v <= low if strict else v < low):
        raise InputError(f"{option_name(name)} must be {'>' if strict else '≥'} {low:g}, got {v}")


DECODER_ENVELOPES = ("measured", "fixed", "none")
WINDOW_RADII = (0.75, 0.95)  # soft real-space window of the images: inner, outer fractions of the box radius


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run directory).

    Architectures are ``"nodes x layers"`` strings. ``batch_size`` is the *global* batch in particles (split
    evenly across processes under torchrun). ``beta`` None → 1/(zdim + n_tilts·D²); ``beta_warmup_epochs`` > 0
    ramps β linearly from 0. ``dose_filter`` multiplies decoded slices by the exposure filter exp(−N/2Ne).
    ``phase_flip``: the encoder sees images multiplied by sign(CTF).
    ``ctf``: False (``--no-ctf``) takes the images as free of any CTF (CTF ≡ 1; the STAR's CTF columns are not read).
    ``box_size`` Fourier-crops images on the fly (None: as on disk). ``device``: "auto" | "cpu" | "cuda[:i]".
    ``max_steps``: end the run after this many optimiser steps in all (None: after ``epochs``); the epoch in progress
    ends there and is written as the last, checkpoint and latents (all particles' with ``z_all_tilts``).
    ``encoder``: ``reference-frame`` (default: tilt pixels placed in the volume frame by their poses, one MLP
    ``enc_arch_a``; see :mod:`tomodrgn.models.encoder`) or ``per-tilt`` (the published tomoDRGN encoder: encoder A per
    tilt → pooling → encoder B).
    ``z_all_tilts``: the latents written at checkpoints come from an encoder pass over all tilts of each particle (the
    minimum tilt count, in file order) instead of the training pass's sampled tilts; None → True for the
    reference-frame encoder (which takes any number of tilts), False otherwise.
    ``lr`` 1e-3 (was 2e-4: on small data sets, e.g. 144 particles of two classes with tilts within ±15°, 2e-4 had not
    separated the classes after 20 epochs (ARI 0.0) where 1e-3 gave 0.86; see ``benchmarks/bench_narrow_tilt.py``).
    ``window``: a soft circular real-space window (1 within 0.75 of the box radius, ramp to 0 at 0.95) on every image
    before its transform, as the published tomoDRGN; narrow-tilt 2-class benchmark, ARI at epoch 30: 0.72 → 0.92.
    Runs saved before the option existed load with ``window`` False.
    ``enc_mask``: radius (px) of the encoder's input pixels (None: D/2 per tilt; min(D/4, 12) for reference-frame).
    ``first`` / ``ind``: train on the first N particles / on the particles of a 0-based index list file (STAR
    particle order), both: the first N of the list (:func:`tomodrgn.io.selection.chosen_indices`, the one rule).
    Every option is checked when the config is made: :class:`~tomodrgn.io.errors.InputError` names it as typed on
    the command line (``--lr``).
    ``tomograms_star``: the tomograms STAR of a RELION 5 / WarpTools 2-D stack set given by its particles STAR.
    ``datadir``: the folder that the STAR's relative image paths are relative to (None: the STAR's own folder).
    ``val_tilts``: K > 0 holds K tilt images of every particle out of training and reports the error on them each
    epoch (see :mod:`tomodrgn.training.validation`).
    ``decoder_envelope``: the per-shell scale of the decoder's output (see :mod:`tomodrgn.models.decoder`):
    ``measured`` (default: the data's signal amplitude per shell, from two half-set back-projections before training,
    :mod:`tomodrgn.training.signal_profile`), ``fixed`` (1 + 9·exp(−r²/8), r in px) or ``none``. Runs saved before
    the option existed load as ``fixed`` (their checkpoints hold the envelope they were trained with).
    ``weight_average_steps``: the saved model for evaluation is an exponential moving average of the weights over
    about this many optimiser steps, in runs of at least ten times as many steps (:mod:`tomodrgn.training.averaging`);
    0: off (runs saved before the option).
    ``amp``: bf16 autocast of the networks where bf16 is native (CUDA, CPUs with ``avx512_bf16`` / ``amx_bf16``),
    fp32 elsewhere or when False (:mod:`tomodrgn.runtime.precision`).
    ``batch_size`` ``"auto"``: the largest batch whose trial step fits ``memory_limit`` GiB (None: the device's free
    memory on CUDA, the available RAM on CPU), chosen at set-up and saved as a number
    (:mod:`tomodrgn.runtime.batch_size`).
    ``refine_poses``: learn per-particle rotation and 3-D origin corrections and per-image 2-D shift corrections
    with the decoder from epoch ``refine_poses_after`` on (:mod:`tomodrgn.models.pose_corrections`), under Gaussian
    priors of widths ``pose_prior_deg`` (°), ``pose_prior_px`` and ``tilt_shift_prior_px`` (pixels of the stacks as
    on disk), by SparseAdam at ``pose_lr`` (prior widths per step).
    """

    mode: str = "vae"
    zdim: int = 8
    enc_arch_a: str = "256x3"
    enc_arch_b: str = "256x1"
    embed_dim: int = 128
    dec_arch: str = "256x3"
    encoder: str = "reference-frame"
    z_all_tilts: bool | None = None
    pooling: str = "concatenate"
    enc_mask: int | None = None
    n_tilts: int | None = None
    sequential_tilts: bool = False
    epochs: int = 20
    max_steps: int | None = None
    batch_size: int | str = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta: float | None = None
    beta_warmup_epochs: float = 0.0
    feat_sigma: float = 0.5
    n_features: int | None = None
    dose_filter: bool = True
    phase_flip: bool = True
    ctf: bool = True
    seed: int = 0
    checkpoint_every: int = 1
    backend: str = "auto"
    num_workers: int = 0
    amp: bool = True
    box_size: int | None = None
    pixel_size: float | None = None
    preload: bool = False
    invert: bool = False
    window: bool = True
    device: str = "auto"
    first: int | None = None
    ind: str | None = None
    tomograms_star: str | None = None
    datadir: str | None = None
    val_tilts: int = 0
    decoder_envelope: str = "measured"
    weight_average_steps: int = 200
    memory_limit: float | None = None
    refine_poses: bool = False
    refine_poses_after: int = 2
    pose_prior_deg: float = 5.0
    pose_prior_px: float = 1.5
    tilt_shift_prior_px: float = 0.5
    pose_lr: float = 0.05

    def __post_init__(self) -> None:
        choices = {"mode": ("vae", "homogeneous"), "encoder": ENCODERS, "pooling": POOLING_MODES}
        choices["backend"] = ("auto", "torch", "triton")
        choices["decoder_envelope"] = DECODER_ENVELOPES
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{option_name(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        check_device_spec(self.device)
        for name in ("enc_arch_a", "enc_arch_b", "dec_arch"):
            try:
                parse_arch(getattr(self, name))
            except (ValueError, TypeError) as e:
                raise InputError(f"{option_name(name)}: {e}") from None
        if self.batch_size != "auto":
            if isinstance(self.batch_size, str) and not self.batch_size.isdigit():
                raise InputError(f"--batch-size must be a number of particles or auto, got {self.batch_size!r}")
            self.batch_size = int(self.batch_size) if isinstance(self.batch_size, str) else self.batch_size
            _number(self, "batch_size", int, 1)
        for name in ("epochs", "checkpoint_every", "embed_dim"):
            _number(self, name, int, 1)
        _number(self, "memory_limit", float, 0.0, strict=True, optional=True)
        _number(self, "zdim", int, 1 if self.mode == "vae" else 0)
        _number(self, "num_workers", int, 0)
        _number(self, "seed", int, 0)
        for name in ("enc_mask", "n_tilts", "n_features", "first", "max_steps"):
            _number(self, name, int, 1, optional=True)
        _number(self, "lr", float, 0.0, strict=True)
        _number(self, "feat_sigma", float, 0.0, strict=True)
        _number(self, "weight_decay", float, 0.0)
        _number(self, "beta_warmup_epochs", float, 0.0)
        _number(self, "beta", float, 0.0, optional=True)
        _number(self, "box_size", int, 8, optional=True)
        if self.box_size is not None and self.box_size % 2:
            raise InputError(f"--box-size must be even, got {self.box_size}")
        if self.z_all_tilts and self.encoder == "per-tilt" and self.pooling == "concatenate":
            raise InputError(
                "--z-all-tilts needs an encoder that takes any number of tilts: the reference-frame "
                "encoder, or a --pooling other than concatenate"
            )
        if self.ind is not None:  # recorded absolute in config.json, so --resume works from any folder
            self.ind = str(Path(self.ind).absolute())
        if self.datadir is not None:
            self.datadir = str(Path(self.datadir).absolute())
        if self.pixel_size is not None:  # overrides the STAR's and the MRC headers' pixel size
            check_pixel_size(self.pixel_size, "pixel_size (--pixel-size)")
        _number(self, "val_tilts", int, 0)
        _number(self, "refine_poses_after", int, 0)
        for name in ("pose_prior_deg", "pose_prior_px", "tilt_shift_prior_px", "pose_lr"):
            _number(self, name, float, 0.0, strict=True)
        _number(self, "weight_average_steps", int, 0)

    @property
    def resolved_z_all_tilts(self) -> bool:
        """:attr:`z_all_tilts` with None resolved (True for the reference-frame encoder)."""
        return self.encoder == "reference-frame" if self.z_all_tilts is None else bool(self.z_all_tilts)

    @property
    def window_radii(self) -> tuple[float, float] | None:
        """(inner, outer) fractions of the box radius of the real-space window, None when ``window`` is off."""
        return WINDOW_RADII if self.window else None

    @property
    def latent_dim(self) -> int:
        """zdim, or 0 in homogeneous mode."""
        return self.zdim if self.mode == "vae" else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown training option(s): {sorted(unknown)}")
        if "window" not in d:  # runs written before the option existed: images were not windowed
            d = {**d, "window": False}
        if "decoder_envelope" not in d:  # runs written before the option existed: no envelope or the fixed one
            d = {**d, "decoder_envelope": "fixed"}  # (the checkpoint's buffers say which; see models.decoder)
        if "weight_average_steps" not in d:  # runs written before the option existed saved the trained weights only
            d = {**d, "weight_average_steps": 0}
        if "encoder" not in d:  # runs written before the option existed used the per-tilt encoder
            d = {**d, "encoder": "per-tilt"}
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        return atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


#: the options a resumed run may change; every other one is the run's own (its config.json)
RESUMABLE_OPTIONS = ("epochs", "max_steps", "num_workers", "device", "checkpoint_every", "amp")


def resumed_config(run: TrainConfig, asked: TrainConfig) -> TrainConfig:
    """The settings of a resumed run: the run's own, with each resumable option that ``asked`` sets (to other than
    its default) taken from ``asked``. Any other option that ``asked`` sets to a value the run does not have is
    refused, each one named (:class:`InputError`): a resumed run cannot change its model, data or optimiser. An
    option given at its default value cannot be told from one not given, and keeps the run's value."""
    taken, differ = {}, []
    for f in fields(TrainConfig):
        new, old = getattr(asked, f.name), getattr(run, f.name)
        if new == f.default or new == old:
            continue
        if f.name in RESUMABLE_OPTIONS:
            taken[f.name] = new
        elif f.name == "mode":
            differ.append(f"{'train_nn' if new == 'homogeneous' else 'train_vae'} on a {old} run")
        else:
            differ.append(f"{option_name(f.name)} {new} (the run has {old})")
    if differ:
        raise InputError(
            f"--resume continues the run with its own settings; these differ: {'; '.join(differ)}. Only "
            f"{', '.join(option_name(n) for n in RESUMABLE_OPTIONS)} can change; start a new run (another -o, or "
            "--overwrite) to change the others"
        )
    return TrainConfig.from_dict({**run.to_dict(), **taken})
