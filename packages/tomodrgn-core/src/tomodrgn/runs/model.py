"""Run set-up: the model a :class:`TrainConfig` describes, the dataset it trains on, and the dataset facts a
checkpoint records (see :mod:`tomodrgn.training.loop` for the loop itself)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomodrgn.data.dataset import TiltSeriesDataset
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.io.selection import read_particles_checked
from tomodrgn.models.mlp import parse_arch
from tomodrgn.models.vae import TomoDRGN
from tomodrgn.training.config import TrainConfig
from tomodrgn.training.signal_profile import envelope_profile, signal_profile
from tomodrgn.training.validation import heldout_split


def build_model(config: TrainConfig, D: int, n_tilts: int) -> TomoDRGN:
    return TomoDRGN(
        D=D,
        zdim=config.latent_dim,
        n_tilts=n_tilts,
        enc_arch_a=parse_arch(config.enc_arch_a),
        enc_arch_b=parse_arch(config.enc_arch_b),
        embed_dim=config.embed_dim,
        pooling=config.pooling,
        dec_arch=parse_arch(config.dec_arch),
        feat_sigma=config.feat_sigma,
        n_features=config.n_features,
        enc_mask=config.enc_mask,
        encoder=config.encoder,
    )


def make_dataset(star_or_series: str | Path | ParticleSeries, config: TrainConfig, norm=None) -> TiltSeriesDataset:
    series = (
        star_or_series
        if isinstance(star_or_series, ParticleSeries)
        else read_particles_checked(star_or_series, pixel_size=config.pixel_size, tomograms_star=config.tomograms_star)
    )
    rows = heldout_split(series, config.val_tilts, config.seed)[0] if config.val_tilts else None
    return TiltSeriesDataset(
        series,
        n_tilts=config.n_tilts,
        sequential=config.sequential_tilts,
        box_size=config.box_size,
        preload=config.preload,
        seed=config.seed,
        invert=config.invert,
        norm=norm,
        tilt_rows=rows,
        window=config.window_radii,
    )


def dataset_metadata(ds: TiltSeriesDataset, voltage: float) -> dict:
    s = ds.series
    return {
        "star_path": str(s.star_path),
        "flavour": s.flavour,
        "n_particles": s.n_particles,
        "box_size": ds.box_size,
        "box_size_on_disk": s.box_size,
        "pixel_size": ds.pixel_size,
        "norm": list(ds.norm),
        "n_tilts": ds.n_tilts,
        "voltage": voltage,
        "lattice": "half lattice, circular mask radius D/2 px, DC excluded, dose mask mid-dose < optimal exposure",
    }


def set_decoder_envelope(model: TomoDRGN, ds: TiltSeriesDataset, config: TrainConfig, voltage: float) -> str:
    """Give a new model's decoder the envelope ``config.decoder_envelope`` asks for (see
    :mod:`tomodrgn.training.signal_profile`); returns a line for the training log saying what was used."""
    dec = model.decoder
    if config.decoder_envelope == "none":
        dec.envelope_gain.fill_(1.0)
        return "decoder envelope: none"
    if config.decoder_envelope == "measured":
        amplitude, measured = signal_profile(ds, voltage, config.dose_filter, seed=config.seed)
        profile = envelope_profile(amplitude, measured)
        if profile is not None:
            dec.set_envelope_profile(profile)
            last = int(np.flatnonzero(measured)[-1])
            return (
                f"decoder envelope: measured, signal to shell {last} of {ds.box_size // 2} "
                f"({ds.pixel_size * ds.box_size / last:.1f} Å); per shell: " + " ".join(f"{v:.3g}" for v in profile)
            )
        return "decoder envelope: fixed (no shell with measurable signal in the half-set back-projections)"
    return "decoder envelope: fixed"
