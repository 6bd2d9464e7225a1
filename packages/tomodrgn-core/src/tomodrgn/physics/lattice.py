"""The Fourier lattice on which images are compared with decoded slices.

Convention (``docs/architecture.md``, "Physics"): a (D+1)×(D+1) grid with coordinates ``linspace(-0.5, 0.5, D+1)``
on x and y (units of cycles/pixel), z = 0. Flattened row-major with y the slow axis, matching :func:`symmetrize_ht`
images of shape (D+1, D+1) indexed [y, x]. A tilt's 3-D sample points are ``coords @ R`` with R its pose (see
:mod:`.pose`). The circular mask keeps radius ≤ D/2 pixels and excludes the centre (DC) point.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from tomodrgn.io.errors import InputError


@dataclass(frozen=True)
class Lattice:
    """Lattice geometry for box size ``D`` (pixels, even)."""

    D: int

    def __post_init__(self) -> None:
        if self.D % 2:
            raise InputError(f"Box size D must be even, got {self.D}")

    @property
    def D1(self) -> int:
        """Points per side: D + 1."""
        return self.D + 1

    @cached_property
    def coords(self) -> np.ndarray:
        """((D+1)², 3) float32 coordinates in cycles/pixel, z = 0."""
        ax = np.linspace(-0.5, 0.5, self.D1, dtype=np.float64)
        y, x = np.meshgrid(ax, ax, indexing="ij")
        return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1).astype(np.float32)

    @cached_property
    def radius_px(self) -> np.ndarray:
        """((D+1)²,) float64 radius of each point in pixels (exact: integer offsets from the centre)."""
        ax = np.arange(self.D1, dtype=np.float64) - self.D // 2
        y, x = np.meshgrid(ax, ax, indexing="ij")
        return np.sqrt(x**2 + y**2).ravel()

    @cached_property
    def circular_mask(self) -> np.ndarray:
        """((D+1)²,) bool: radius ≤ D/2 px, DC excluded."""
        r = self.radius_px
        return (r <= self.D / 2) & (r > 0)

    @cached_property
    def circular_indices(self) -> np.ndarray:
        """int64 flat indices of the points in :attr:`circular_mask`."""
        return np.flatnonzero(self.circular_mask)

    def spatial_frequency(self, pixel_size: float) -> np.ndarray:
        """((D+1)²,) float64 |k| in Å⁻¹ at each point: r / (pixel_size · D)."""
        return self.radius_px / (pixel_size * self.D)

    def freqs2d(self, pixel_size: float) -> np.ndarray:
        """((D+1)², 2) float64 (kx, ky) in Å⁻¹."""
        return self.coords[:, :2].astype(np.float64) / pixel_size

    def coords_torch(self, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.from_numpy(self.coords).to(device)
