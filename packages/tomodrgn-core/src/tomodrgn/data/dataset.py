"""Torch dataset of particle tilt-series: sampled tilts as normalised, symmetrized centred Hartley images.

Each fetch of particle i returns ``n_tilts`` of its tilt images: a random choice without replacement in random
order (fresh at every fetch), or its first ``n_tilts`` images in file order when ``sequential``. The random choice
is drawn from a generator seeded by (seed, epoch, i, number of earlier fetches of i since the last
:meth:`set_epoch`), so it is reproducible from ``seed`` (a resumed run draws what the original drew in that epoch) and
independent of which DataLoader worker runs it; call :meth:`set_epoch` each epoch (with ``persistent_workers=True``
the workers keep their own copy: their per-index fetch count still makes each epoch's draw fresh).
Images are read lazily from the memory-mapped stacks unless ``preload`` fits the budget.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.physics.dose import dose_per_tilt
from tomodrgn.physics.hartley import fourier_crop, ht2_center, symmetrize_ht

NORM_MAX_IMAGES = 1000  # images used to estimate the Hartley std


class TiltSeriesDataset(Dataset):
    """Particles of a :class:`ParticleSeries` as training items (see ``docs/architecture.md``).

    ``box_size``: Fourier-crop the images to this (even) size; ``pixel_size`` grows by D/box_size.
    ``preload``: keep all transformed images in RAM when they fit ``preload_budget_gb`` (GB = 1e9 bytes); when they
    do not, a warning is issued and images are read from the memory-mapped stacks at each fetch instead
    (``self.preloaded`` says which). ``invert``: multiply the images by −1 (dark-on-light particles).
    ``norm``: (mean, std) of the Hartley images; default (0, std estimated from ≤ 1000 random images).
    Items: ``ctf`` (T, 8) is ``ParticleSeries.ctf_params(power=True)``: the 7 CTF parameters and the power the CTF
    enters each image with (1; 2 for CTF-premultiplied images, see :func:`tomodrgn.physics.ctf.image_ctf`).
    ``ctf``: False takes the images as free of any CTF (``--no-ctf``): ``ctf`` items are then
    :data:`tomodrgn.physics.ctf.NO_CTF` (CTF ≡ 1, phase flip a no-op), whatever the series holds.
    ``tilt_rows``: the image rows (into ``series.images``) each particle may draw from (default: all its tilts);
    held-out validation tilts are left out this way (also from the normalisation estimate).
    ``window``: (inner, outer) fractions of the box radius of a soft circular real-space window applied to every
    image before its transform (1 within inner·D/2 of the centre, linear ramp to 0 at outer·D/2), as the published
    tomoDRGN does by default; None: no window.
    """

    def __init__(
        self,
        series: ParticleSeries,
        n_tilts: int | None = None,
        sequential: bool = False,
        box_size: int | None = None,
        preload: bool = False,
        preload_budget_gb: float = 8.0,
        seed: int = 0,
        invert: bool = False,
        norm: tuple[float, float] | None = None,
        tilt_rows: list[np.ndarray] | None = None,
        window: tuple[float, float] | None = None,
        ctf: bool = True,
    ) -> None:
        self.series = series
        if series.n_particles == 0:
            raise InputError(f"{series.star_path}: no particles")
        self.tilt_rows = list(series.image_indices) if tilt_rows is None else [np.asarray(r) for r in tilt_rows]
        if len(self.tilt_rows) != series.n_particles:
            raise ValueError(f"tilt_rows has {len(self.tilt_rows)} entries for {series.n_particles} particles")
        self.n_tilts = self._checked_n_tilts(n_tilts)
        d_in = series.box_size
        self.box_size = d_in if box_size is None else int(box_size)
        if self.box_size > d_in or self.box_size % 2 or self.box_size < 2:
            raise InputError(f"box_size must be even and ≤ {d_in} (the stacks' box), got {self.box_size}")
        self.pixel_size = series.pixel_size * d_in / self.box_size
        self.sequential = sequential
        self.seed = int(seed)
        self.invert = invert
        self.window = None if window is None else soft_window(series.box_size, *window)
        self.epoch = 0
        self._fetches = np.zeros(series.n_particles, dtype=np.int64)

        # per-image tensors, mid-exposure dose over all of each particle's tilts
        mid = np.empty(series.n_images)
        for rows in series.image_indices:
            mid[rows] = series.dose[rows] - dose_per_tilt(series.dose[rows]) / 2.0
        self._rotation = torch.as_tensor(series.rotation, dtype=torch.float32)
        self._shift = torch.as_tensor(series.shift, dtype=torch.float32)
        ctf_series = series if ctf else series.without_ctf()
        self._ctf = torch.as_tensor(ctf_series.ctf_params(power=True), dtype=torch.float32)  # (n, 8)
        self._dose = torch.as_tensor(series.dose, dtype=torch.float32)
        self._mid_dose = torch.as_tensor(mid, dtype=torch.float32)
        self._tilt_weight = torch.as_tensor(np.cos(np.deg2rad(series.tilt)), dtype=torch.float32)

        self.norm = tuple(float(x) for x in norm) if norm is not None else self._estimate_norm()
        self._images: torch.Tensor | None = None
        self.preloaded = False
        if preload:
            need = series.n_images * (self.box_size + 1) ** 2 * 4
            if need <= preload_budget_gb * 1e9:
                self._images = torch.from_numpy(self._transform(np.arange(series.n_images)))
                self.preloaded = True
            else:
                warnings.warn(
                    f"preload needs {need / 1e9:.2f} GB > budget {preload_budget_gb} GB: reading images from the "
                    "memory-mapped stacks instead",
                    stacklevel=2,
                )

    def _checked_n_tilts(self, n_tilts: int | None) -> int:
        counts = np.array([len(r) for r in self.tilt_rows], dtype=np.int64)
        n = int(counts.min()) if n_tilts is None else int(n_tilts)
        if n < 1:
            raise InputError(f"n_tilts must be ≥ 1, got {n}")
        short = np.flatnonzero(counts < n)
        if len(short):
            p = short[0]
            raise InputError(
                f"{self.series.star_path}: particle {self.series.particle_names[p]!r} has {counts[p]} tilt images, "
                f"fewer than the {n} requested ({len(short)} particle(s) too short); lower n_tilts or filter them"
            )
        return n

    def with_tilts(self, n_tilts: int | None = None, sequential: bool = True) -> TiltSeriesDataset:
        """A view of this dataset (same images, normalisation and preloaded RAM) drawing ``n_tilts`` per particle
        (None: the minimum tilt count, i.e. all tilts when every particle has the same number)."""
        view = copy.copy(self)
        view.n_tilts = self._checked_n_tilts(n_tilts)
        view.sequential = sequential
        view._fetches = np.zeros_like(self._fetches)
        return view

    def with_rows(
        self, tilt_rows: list[np.ndarray], n_tilts: int | None = None, sequential: bool = True
    ) -> TiltSeriesDataset:
        """A view (same images, normalisation, preloaded RAM) whose particles draw from ``tilt_rows`` instead."""
        view = copy.copy(self)
        view.tilt_rows = [np.asarray(r) for r in tilt_rows]
        return view.with_tilts(n_tilts, sequential)

    # -------------------------------------------------------------------------------------------------- properties
    @property
    def n_particles(self) -> int:
        return self.series.n_particles

    def __len__(self) -> int:
        return self.series.n_particles

    def set_epoch(self, epoch: int) -> None:
        """Epoch number mixed into the tilt-sampling seed; restarts the per-particle fetch counts."""
        self.epoch = int(epoch)
        self._fetches[:] = 0

    # ----------------------------------------------------------------------------------------------------- images
    def _raw_hartley(self, rows: np.ndarray) -> np.ndarray:
        """Symmetrized centred Hartley images (len(rows), d+1, d+1) float32, before normalisation."""
        imgs = self.series.read_images(rows)
        if self.window is not None:
            imgs = imgs * self.window
        if self.box_size != self.series.box_size:
            imgs = fourier_crop(imgs.astype(np.float64), self.box_size)
        if self.invert:
            imgs = -imgs
        return symmetrize_ht(ht2_center(np.asarray(imgs, dtype=np.float64))).astype(np.float32)

    def _transform(self, rows: np.ndarray, chunk: int = 256) -> np.ndarray:
        out = np.empty((len(rows), self.box_size + 1, self.box_size + 1), dtype=np.float32)
        for start in range(0, len(rows), chunk):
            sl = slice(start, start + chunk)
            out[sl] = (self._raw_hartley(rows[sl]) - self.norm[0]) / self.norm[1]
        return out

    def _estimate_norm(self) -> tuple[float, float]:
        """(0, std) of the Hartley images of ≤ NORM_MAX_IMAGES images chosen at random (seeded)."""
        allowed = np.sort(np.concatenate(self.tilt_rows))
        n = len(allowed)
        rng = np.random.default_rng([self.seed, 0x6E6F726D])
        rows = allowed[np.sort(rng.choice(n, size=min(n, NORM_MAX_IMAGES), replace=False))]
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(rows), 256):
            ht = self._raw_hartley(rows[start : start + 256]).astype(np.float64)
            total += ht.sum()
            total_sq += (ht * ht).sum()
            count += ht.size
        mean = total / count
        std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
        if not std > 0:
            raise InputError(f"{self.series.star_path}: the images have zero variance; cannot normalise")
        return (0.0, std)

    # ---------------------------------------------------------------------------------------------------- fetching
    def sample_tilts(self, index: int) -> np.ndarray:
        """Rows (into ``series.images``) of the tilts used for this fetch of particle ``index``."""
        rows = self.tilt_rows[index]
        if self.sequential:
            return rows[: self.n_tilts]
        rng = np.random.default_rng([self.seed, self.epoch, index, int(self._fetches[index])])
        self._fetches[index] += 1
        return rows[rng.permutation(len(rows))[: self.n_tilts]]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"particle index {index} out of range 0..{len(self) - 1}")
        rows = self.sample_tilts(index)
        t = torch.from_numpy(rows)
        if self._images is not None:
            images = self._images[t]
        else:
            images = torch.from_numpy(self._transform(rows))
        return {
            "images": images,
            "rotation": self._rotation[t],
            "shift": self._shift[t],
            "ctf": self._ctf[t],
            "dose": self._dose[t],
            "mid_dose": self._mid_dose[t],
            "tilt_weight": self._tilt_weight[t],
            "index": torch.tensor(index, dtype=torch.int64),
            "tilt_index": t.to(torch.int64),
        }


def soft_window(d: int, inner: float, outer: float) -> np.ndarray:
    """(d, d) real-space window, centre (d/2, d/2): 1 within inner·d/2 px, linear ramp to 0 at outer·d/2 px."""
    if not 0 < inner < outer:
        raise InputError(f"window: need 0 < inner < outer (fractions of the box radius), got {inner}, {outer}")
    ax = np.arange(d) - d / 2
    r = np.hypot(*np.meshgrid(ax, ax, indexing="ij")) / (d / 2)
    return np.clip((outer - r) / (outer - inner), 0.0, 1.0).astype(np.float32)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack dataset items into a batch: every per-tilt field becomes (B, T, ...), ``index`` (B,)."""
    if not items:
        raise ValueError("collate: empty batch")
    counts = {int(it["tilt_index"].shape[0]) for it in items}
    if len(counts) > 1:
        raise InputError(f"collate: items have different tilt counts {sorted(counts)}; use a fixed n_tilts")
    return {key: torch.stack([it[key] for it in items]) for key in items[0]}
