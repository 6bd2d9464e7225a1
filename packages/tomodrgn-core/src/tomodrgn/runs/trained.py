"""Trained models: load a run, decode volumes for latent points, embed particles (μ, log σ²), write MRC volumes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.kernels import half_lattice
from tomodrgn.physics.hand import flip_hand as mirror
from tomodrgn.physics.hartley import iht3_center
from tomodrgn.runs import checkpoint as ck
from tomodrgn.runs.config import TrainConfig
from tomodrgn.runs.model import build_model, encode_particles, make_dataset
from tomodrgn.runs.particles import training_particles
from tomodrgn.runtime.device import resolve_device
from tomodrgn.runtime.mmap_threshold import fix_mmap_threshold


@dataclass
class TrainedModel:
    """A trained tomoDRGN model from a run directory (checkpoint ``path``), in eval mode on ``device``.

    Decoded volumes are in the hand of the particles' own tool (``docs/architecture.md``, "Hand"); with
    ``flip_hand`` every decoded volume is mirrored (z → −z about voxel D/2), for pipelines whose hand differs."""

    model: torch.nn.Module
    config: TrainConfig
    metadata: dict
    epoch: int
    path: Path
    device: torch.device
    flip_hand: bool = False

    @property
    def pixel_size(self) -> float:
        """Å per voxel of decoded volumes (the training box, after any Fourier crop)."""
        return float(self.metadata["pixel_size"])

    @property
    def box_size(self) -> int:
        return int(self.metadata["box_size"])

    @property
    def zdim(self) -> int:
        return self.config.latent_dim

    @torch.no_grad()
    def iter_decode(self, z: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Volumes (D, D, D) float32 in real space, one per row of z (n, zdim); one volume when homogeneous."""
        if self.zdim == 0:
            if z is not None and np.size(z) > 0:
                raise InputError("this model is homogeneous (no latent space): call decode(None)")
            zt = None
        else:
            if z is None:
                raise InputError(f"this model has a {self.zdim}-D latent space: pass z of shape (n, {self.zdim})")
            z = np.atleast_2d(np.asarray(z, dtype=np.float32))
            if z.shape[1] != self.zdim:
                raise InputError(f"z has {z.shape[1]} dimensions, the model has {self.zdim}")
            zt = torch.as_tensor(z, device=self.device)
        for ht in self.model.decoder.hartley_volumes(zt):  # the grid and the first layer's z-free part once
            vol = iht3_center(ht.double()).float().cpu().numpy()
            yield mirror(vol) if self.flip_hand else vol

    def decode(self, z: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Volumes (n, D, D, D) float32 for z (n, zdim) (n = 1 when homogeneous); ``progress(done, total)``."""
        total = 1 if z is None else int(np.atleast_2d(z).shape[0])
        out = []
        for i, vol in enumerate(self.iter_decode(z)):
            out.append(vol)
            if progress is not None:
                progress(i + 1, total)
        return np.stack(out)

    @torch.no_grad()
    def embed(
        self,
        star_or_series: str | Path | ParticleSeries | None = None,
        n_tilts: int | None = None,
        batch_size: int = 64,
        sequential: bool = True,
        num_workers: int = 0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(μ, log σ²) (n_particles, zdim) for every particle (STAR order), from ``n_tilts`` tilts each.

        ``star_or_series`` None: the run's training particles (its ``--first`` / ``--ind`` selection applied,
        :func:`~tomodrgn.runs.particles.training_particles`), in the order of its ``z.npy``.

        ``n_tilts`` None: all tilts (the minimum tilt count) when the run wrote its latents from all tilts
        (``z_all_tilts``, e.g. the reference-frame encoder), else the training value. With the per-tilt encoder and
        ``concatenate`` pooling n_tilts must equal the training value; ``sequential`` takes the first tilts in file
        order (else a seeded random subset). The training normalisation is reused.
        """
        if self.zdim == 0:
            raise InputError("this model is homogeneous (no encoder): nothing to embed")
        if star_or_series is None:
            star_or_series = training_particles(self)
        if n_tilts is None and not self.config.resolved_z_all_tilts:
            n_tilts = self.metadata["n_tilts"]
        cfg = TrainConfig.from_dict(
            {**self.config.to_dict(), "n_tilts": n_tilts, "sequential_tilts": sequential, "val_tilts": 0}
        )
        ds = make_dataset(star_or_series, cfg, norm=tuple(self.metadata["norm"]))
        if ds.box_size != self.box_size:
            raise InputError(f"particles give box {ds.box_size}, the model was trained at {self.box_size}")
        lattice = half_lattice(ds.box_size, ds.pixel_size)
        idx = np.arange(len(ds))
        _, mu, lv = encode_particles(self.model, ds, idx, lattice, cfg, self.device, batch_size, num_workers)
        return mu, lv


def load_model(
    run_dir: str | Path, epoch: int | None = None, device: str = "cpu", flip_hand: bool = False
) -> TrainedModel:
    """Load ``weights.{epoch}.pt`` (latest when None) from a training run directory; ``flip_hand``: decode mirrored
    volumes (:class:`TrainedModel`)."""
    fix_mmap_threshold()  # freed large buffers leave the resident set (runtime/mmap_threshold.py)
    path = ck.find_checkpoint(run_dir, epoch)
    state = ck.load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    meta = state["dataset"]
    dev = resolve_device(device)
    model = build_model(config, int(meta["box_size"]), int(meta["n_tilts"]))
    model.load_state_dict(state.get("model_ema", state["model"]))  # the weight average when the run kept one
    model.to(dev).eval()
    return TrainedModel(model, config, meta, int(state["epoch"]) - 1, Path(path), dev, flip_hand=bool(flip_hand))


def write_volume(path: str | Path, vol: np.ndarray, pixel_size: float) -> Path:
    """Write a (D, D, D) volume as MRC with voxel size ``pixel_size`` Å."""
    return write_mrc(path, np.asarray(vol, dtype=np.float32), pixel_size=pixel_size)
