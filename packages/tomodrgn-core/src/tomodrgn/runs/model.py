"""A run's model and data: the model a :class:`TrainConfig` describes, the dataset it trains on, the dataset facts a
checkpoint records, and how particles go through its encoder (images → encoder input → μ, log σ²)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tomodrgn.data.dataset import TiltSeriesDataset, collate
from tomodrgn.data.heldout import heldout_split
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.io.selection import read_particles_checked
from tomodrgn.kernels import HalfLattice
from tomodrgn.models.encoder import phase_flip
from tomodrgn.models.mlp import parse_arch
from tomodrgn.models.vae import TomoDRGN
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import center_hartley_images
from tomodrgn.runs.config import TrainConfig


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


def read_training_series(star: str | Path, config: TrainConfig) -> ParticleSeries:
    """The particles of ``star`` read as a run with ``config`` reads them (its pixel size, tomograms STAR, stack
    folder and CTF choice); every particle, before the run's ``--first`` / ``--ind`` selection."""
    return read_particles_checked(
        star,
        pixel_size=config.pixel_size,
        tomograms_star=config.tomograms_star,
        datadir=config.datadir,
        ctf="auto" if config.ctf else "none",
    )


def training_grid(series: ParticleSeries, config: TrainConfig) -> tuple[int, float]:
    """(box in px, pixel size in Å) of the images a run with ``config`` trains on, and so of its maps: the stacks'
    box Fourier-cropped to ``--box-size`` when given (as :class:`~tomodrgn.data.dataset.TiltSeriesDataset`)."""
    box = series.box_size if config.box_size is None else int(config.box_size)
    return box, series.pixel_size * series.box_size / box


def make_dataset(star_or_series: str | Path | ParticleSeries, config: TrainConfig, norm=None) -> TiltSeriesDataset:
    series = (
        star_or_series if isinstance(star_or_series, ParticleSeries) else read_training_series(star_or_series, config)
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
        ctf=config.ctf,
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


@functools.lru_cache(maxsize=8)
def _lattice_freqs(D: int, pixel_size: float) -> torch.Tensor:
    """((D+1)², 2) float32 (kx, ky) in Å⁻¹ of the full lattice, built once per (D, pixel size), not every step."""
    return torch.from_numpy(Lattice(D).freqs2d(pixel_size)).to(torch.float32)


def encoder_images(
    images: torch.Tensor,
    ctf: torch.Tensor,
    lattice: HalfLattice,
    config: TrainConfig,
    dose: torch.Tensor | None = None,
    origin: torch.Tensor | None = None,
) -> torch.Tensor:
    """The encoder's input: images (B, T, D+1, D+1), centred by their RELION origins ``origin`` (B, T, 2) Å (as the
    published tomoDRGN does before encoding), then phase-flipped by the CTF when ``config.phase_flip``.

    With the per-tilt encoder and ``concatenate`` pooling the tilts of each particle are put in order of cumulative
    dose (acquisition order), so that each slot of the concatenated embedding has a consistent meaning however the
    tilts were sampled.
    """
    freqs = _lattice_freqs(lattice.D, lattice.pixel_size).to(images.device)
    if origin is not None and bool(torch.any(origin != 0)):
        images = center_hartley_images(images, freqs, origin.to(images.dtype))
    if config.phase_flip:
        images = phase_flip(images, ctf, freqs)
    if config.encoder == "per-tilt" and config.pooling == "concatenate" and dose is not None:
        order = torch.argsort(dose, dim=1, stable=True)
        images = torch.take_along_dim(images, order[:, :, None, None], dim=1)
    return images


@torch.no_grad()
def encode_particles(
    model: TomoDRGN,
    ds: TiltSeriesDataset,
    indices: list[int] | np.ndarray,
    lattice: HalfLattice,
    config: TrainConfig,
    device: torch.device | str,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoder pass (no sampling) over particles ``indices`` of ``ds``: (indices, μ, log σ²) as numpy arrays."""
    loader = DataLoader(ds, batch_size=batch_size, sampler=list(indices), collate_fn=collate, num_workers=num_workers)
    idx, mus, lvs = [], [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        images = encoder_images(batch["images"], batch["ctf"], lattice, config, batch["dose"], batch["shift"])
        mu, lv = model.encode(images, batch["rotation"])
        idx.append(batch["index"].cpu().numpy())
        mus.append(mu.float().cpu().numpy())
        lvs.append(lv.float().cpu().numpy())
    return np.concatenate(idx), np.concatenate(mus), np.concatenate(lvs)
