"""A trained run as the widgets use it: model, latent means z, the training particles, and a volume cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LoadedRun:
    """Model (:class:`tomodrgn.runs.trained.TrainedModel`), z (n, zdim) in STAR particle order, particles."""

    run_dir: Path
    model: Any
    z: np.ndarray | None
    series: Any
    cache_size: int = 32
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pixel_size(self) -> float:
        return float(self.model.pixel_size)

    def volume(self, particle: int) -> np.ndarray:
        """Decoded volume (D, D, D) at particle ``particle``'s z (homogeneous: the one volume), LRU-cached."""
        key = int(particle) if self.z is not None else -1
        with self._lock:  # widgets decode in worker threads
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            vol = self.model.decode(None if self.z is None else self.z[key : key + 1])[0]
            self._cache[key] = vol
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return vol

    def mean_volume(self) -> np.ndarray:
        """Volume (D, D, D) at the mean of z (homogeneous: the one volume)."""
        z = None if self.z is None else self.z.mean(axis=0, keepdims=True)
        return self.model.decode(z)[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Volumes (n, D, D, D) at latent points ``z`` (n, zdim)."""
        with self._lock:
            return self.model.decode(z)

    def volumes(self, particles: np.ndarray) -> list[np.ndarray]:
        return [self.volume(int(p)) for p in particles]

    def iter_volumes(self, particles: np.ndarray) -> Iterator[np.ndarray]:
        """Volumes of ``particles`` decoded one at a time (not cached: for streaming many; homogeneous: the one)."""
        if self.z is None:
            vol = self.volume(0)
            for _ in particles:
                yield vol
            return
        for p in particles:
            with self._lock:
                vol = self.model.decode(self.z[int(p) : int(p) + 1])[0]
            yield vol


def load_run(run_dir: str | Path, epoch: int | None = None, star: str | Path | None = None) -> LoadedRun:
    """Load a training run folder: the checkpoint (latest or ``epoch``), its z and the training STAR.

    The STAR is the one recorded in the checkpoint, restricted to the run's ``--first`` / ``--ind`` particles,
    unless ``star`` is given. Raises FileNotFoundError naming the
    missing file; :class:`tomodrgn.api.InputError` if the STAR does not match the run's latents.
    """
    from napari_tomodrgn._torch_setup import prepare_torch

    prepare_torch()
    from tomodrgn.api import InputError, RunFolder, load_model, read_particles, training_particles

    run_dir = Path(run_dir)
    model = load_model(run_dir, epoch)
    z = None
    if model.zdim:
        folder = RunFolder(run_dir)
        z = folder.load_z_of_checkpoint(model.epoch)
        if z is None:
            raise FileNotFoundError(f"{run_dir}: no latent file {folder.z(model.epoch).name} or {folder.z_link.name}")
    if star is not None:
        star_path = Path(star)
        series = read_particles(star_path, pixel_size=model.config.pixel_size)
    else:  # the run's training particles, restricted to its --first / --ind selection (one per row of z)
        series = training_particles(model)
        star_path = Path(series.star_path)
    if z is not None and len(z) != series.n_particles:
        raise InputError(
            f"{star_path} has {series.n_particles} particles but run {run_dir} has latents for {len(z)}: "
            "choose the STAR the run was trained on"
        )
    return LoadedRun(run_dir, model, z, series)
