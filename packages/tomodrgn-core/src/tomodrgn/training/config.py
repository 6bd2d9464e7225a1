"""Training configuration (a JSON-serialisable dataclass)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tomodrgn.models.encoder import ENCODERS
from tomodrgn.models.mlp import parse_arch
from tomodrgn.models.pooling import POOLING_MODES

WINDOW_RADII = (0.75, 0.95)  # soft real-space window of the images: inner, outer fractions of the box radius


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run directory).

    Architectures are ``"nodes x layers"`` strings. ``batch_size`` is the *global* batch in particles (split
    evenly across processes under torchrun). ``beta`` None → 1/(zdim + n_tilts·D²); ``beta_warmup_epochs`` > 0
    ramps β linearly from 0. ``dose_filter`` multiplies decoded slices by the exposure filter exp(−N/2Ne).
    ``phase_flip``: the encoder sees images multiplied by sign(CTF).
    ``box_size`` Fourier-crops images on the fly (None: as on disk). ``device``: "auto" | "cpu" | "cuda[:i]".
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
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta: float | None = None
    beta_warmup_epochs: float = 0.0
    feat_sigma: float = 0.5
    n_features: int | None = None
    dose_filter: bool = True
    phase_flip: bool = True
    seed: int = 0
    checkpoint_every: int = 1
    backend: str = "auto"
    num_workers: int = 0
    amp: bool = False
    box_size: int | None = None
    pixel_size: float | None = None
    preload: bool = False
    invert: bool = False
    window: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mode not in ("vae", "homogeneous"):
            raise ValueError(f"mode must be 'vae' or 'homogeneous', got {self.mode!r}")
        if self.mode == "vae" and self.zdim < 1:
            raise ValueError(f"vae mode needs zdim ≥ 1, got {self.zdim}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.z_all_tilts and self.encoder == "per-tilt" and self.pooling == "concatenate":
            raise ValueError(
                "z_all_tilts needs an encoder that takes any number of tilts: the reference-frame "
                "encoder, or a pooling other than concatenate"
            )
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {self.pooling!r}")
        if self.backend not in ("auto", "torch", "triton"):
            raise ValueError(f"backend must be auto, torch or triton, got {self.backend!r}")
        for name in ("enc_arch_a", "enc_arch_b", "dec_arch"):
            parse_arch(getattr(self, name))
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("epochs, batch_size and checkpoint_every must be ≥ 1")

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
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        if "window" not in d:  # runs written before the option existed: images were not windowed
            d = {**d, "window": False}
        if "encoder" not in d:  # runs written before the option existed used the per-tilt encoder
            d = {**d, "encoder": "per-tilt"}
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
