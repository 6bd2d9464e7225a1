"""Reference (pure torch) implementation of the lattice-mask step.

For a batch of N tilt images: keep the lattice points whose mid-exposure dose is below the optimal exposure
(``docs/architecture.md``, "Physics"), weight them (dose weight × cos tilt), gather the kept points (compaction),
rotate them by each image's pose (``coords @ R``) and featurise them with gaussian Fourier features
``[sin(2π x·B), cos(2π x·B)]``.

Only half of the (circularly masked, DC-free) lattice is processed: every kept point k stands for the pair (k, −k),
since the Hartley value at −k follows from the decoder's two outputs at k (see :mod:`tomodrgn.models.decoder`).
Masks depend on |k| only, so a pair is kept or dropped together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from tomodrgn.physics.dose import critical_exposure, optimal_exposure
from tomodrgn.physics.lattice import Lattice


@dataclass(frozen=True)
class HalfLattice:
    """Lattice-only quantities for the half lattice, computed once on the host in float64 and stored as tensors.

    ``pos_index`` / ``neg_index``: flat indices into the (D+1)² lattice of each half point k and of −k.
    ``coords``: (P, 3) float32 coordinates (cycles/pixel) of k; ``freqs``: (P, 2) float32 (kx, ky) in Å⁻¹.
    ``optimal_exposure`` / ``critical_exposure``: (P,) float32 in e⁻/Å² (+inf never occurs: DC is excluded).
    """

    D: int
    pixel_size: float
    pos_index: torch.Tensor
    neg_index: torch.Tensor
    coords: torch.Tensor
    freqs: torch.Tensor
    optimal_exposure: torch.Tensor
    critical_exposure: torch.Tensor

    @property
    def n_points(self) -> int:
        return int(self.pos_index.numel())

    def to(self, device: torch.device | str) -> HalfLattice:
        return HalfLattice(
            self.D,
            self.pixel_size,
            *(t.to(device) for t in (self.pos_index, self.neg_index, self.coords, self.freqs)),
            self.optimal_exposure.to(device),
            self.critical_exposure.to(device),
        )


def half_lattice(D: int, pixel_size: float, voltage_kv: float = 300.0) -> HalfLattice:
    """The half of the circular, DC-free lattice with flat index below the centre, and its mirror indices."""
    lat = Lattice(D)
    n = lat.D1 * lat.D1
    centre = n // 2
    pos = lat.circular_indices[lat.circular_indices < centre]
    neg = (n - 1) - pos  # point-reflection through the centre of a (D+1)×(D+1) grid
    freq = lat.spatial_frequency(pixel_size)[pos]
    return HalfLattice(
        D=D,
        pixel_size=pixel_size,
        pos_index=torch.from_numpy(pos.astype(np.int64)),
        neg_index=torch.from_numpy(neg.astype(np.int64)),
        coords=torch.from_numpy(lat.coords[pos]),
        freqs=torch.from_numpy(lat.freqs2d(pixel_size)[pos].astype(np.float32)),
        optimal_exposure=torch.from_numpy(optimal_exposure(freq, voltage_kv).astype(np.float32)),
        critical_exposure=torch.from_numpy(critical_exposure(freq, voltage_kv).astype(np.float32)),
    )


@dataclass
class MaskedLattice:
    """The kept (image, point) pairs of a batch of N images, K in all, in image-major order.

    ``image``: (K,) int64 index of the image (0..N−1); ``point``: (K,) int64 index into the half lattice;
    ``weight``: (K,) float32 dose weight × tilt weight; ``coords``: (K, 3) rotated coordinates;
    ``features``: (K, 2F) gaussian Fourier features ``[sin(2π x·B), cos(2π x·B)]`` (None if not asked).
    """

    image: torch.Tensor
    point: torch.Tensor
    weight: torch.Tensor
    coords: torch.Tensor
    features: torch.Tensor | None


def masked_lattice_torch(
    lattice: HalfLattice,
    rotations: torch.Tensor,
    cumulative_dose: torch.Tensor,
    mid_dose: torch.Tensor,
    tilt_weight: torch.Tensor,
    feature_matrix: torch.Tensor | None = None,
) -> MaskedLattice:
    """Reference lattice-mask step for N images.

    ``rotations`` (N, 3, 3); ``cumulative_dose`` (N,) e⁻/Å² (dose weight exp(−N/2Ne)); ``mid_dose`` (N,) e⁻/Å²
    (mask: mid_dose < optimal exposure); ``tilt_weight`` (N,); ``feature_matrix`` B (3, F) in cycles per unit
    coordinate, or None to skip featurisation.
    """
    keep = mid_dose[:, None] < lattice.optimal_exposure[None, :]  # (N, P)
    image, point = keep.nonzero(as_tuple=True)
    dw = torch.exp(-cumulative_dose[image] / (2.0 * lattice.critical_exposure[point]))
    weight = (dw * tilt_weight[image]).to(torch.float32)
    coords = torch.einsum("kj,kji->ki", lattice.coords[point], rotations[image].to(lattice.coords.dtype))
    features = None
    if feature_matrix is not None:
        arg = (2.0 * math.pi) * (coords @ feature_matrix.to(coords.dtype))
        features = torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)
    return MaskedLattice(image=image, point=point, weight=weight, coords=coords, features=features)
