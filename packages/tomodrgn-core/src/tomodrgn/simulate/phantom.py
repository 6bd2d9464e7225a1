"""Procedural phantoms: asymmetric macromolecules built from gaussian blobs (no downloads).

Geometry is defined in units of the box size D (fractions of the box edge, centre at 0), so the same molecule is
produced at any D. A phantom is a list of named *components* (sets of blobs: a core and sub-domains). A particle's
volume is ``Σ_c a_c · component_c`` translated by ``t_c`` (pixels), which covers compositional heterogeneity
(a_c ∈ {0, 1}) and a domain moving along a path (t_c varying).

Volumes are arrays indexed [z, y, x]; voxel (z, y, x) = (D/2, D/2, D/2) is the origin (the centre of rotation, the
same origin as the centred FFT of :mod:`tomodrgn.physics.hartley`). Overall particle diameter ≈ 0.6 D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Blobs:
    """Gaussian blobs: centres (n, 3) (x, y, z) and sigma (n,) in box fractions, peak amplitude (n,)."""

    centers: np.ndarray
    sigma: np.ndarray
    amplitude: np.ndarray

    def mass(self) -> float:
        """Integrated density (box-fraction units): Σ a·(2π)^{3/2}·σ³."""
        return float(np.sum(self.amplitude * (2 * np.pi) ** 1.5 * self.sigma**3))


@dataclass(frozen=True)
class Phantom:
    """Named components of a molecule; ``names[i]`` labels ``components[i]``."""

    names: tuple[str, ...]
    components: tuple[Blobs, ...]

    def masses(self) -> np.ndarray:
        return np.array([c.mass() for c in self.components])


def _blobs(centers: list[list[float]], sigma: float | list[float], amplitude: float = 1.0) -> Blobs:
    c = np.asarray(centers, dtype=np.float64)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(c),)).copy()
    return Blobs(c, s, np.full(len(c), amplitude))


def ribosome_like() -> Phantom:
    """An asymmetric core (two lobes, like large + small subunit) and three protruding sub-domains A, B, C.

    Each sub-domain is ~15–20 % of the total mass, so classes lacking different domains are clearly distinct.
    Fixed geometry (no randomness): identical for every seed and box size.
    """
    rng = np.random.default_rng(20241124)  # fixed: the molecule is part of the definition, not of the experiment
    # large lobe: ellipsoid cloud centred slightly off-centre; small lobe on top, offset in x
    large = rng.normal(size=(9, 3)) * np.array([0.09, 0.07, 0.06]) + np.array([0.02, -0.03, -0.02])
    small = rng.normal(size=(5, 3)) * np.array([0.07, 0.04, 0.04]) + np.array([-0.04, 0.08, 0.05])
    core = _blobs(np.concatenate([large, small]).tolist(), 0.055)
    dom_a = _blobs([[0.20, 0.02, 0.03], [0.25, 0.07, 0.06], [0.21, 0.10, -0.02], [0.16, -0.04, 0.08]], 0.055)  # +x
    dom_b = _blobs([[-0.05, -0.19, 0.02], [0.02, -0.23, 0.06], [-0.10, -0.22, -0.04], [0.06, -0.17, -0.03]], 0.055)
    dom_c = _blobs([[-0.17, 0.00, -0.12], [-0.22, 0.06, -0.16], [-0.14, 0.07, -0.20], [-0.20, -0.05, -0.08]], 0.055)
    return Phantom(("core", "A", "B", "C"), (core, dom_a, dom_b, dom_c))


def hinged() -> Phantom:
    """A core (static) and one domain that swings along an arc (see :func:`hinge_path`)."""
    base = ribosome_like()
    core = Blobs(
        np.concatenate([base.components[0].centers, base.components[2].centers]),
        np.concatenate([base.components[0].sigma, base.components[2].sigma]),
        np.concatenate([base.components[0].amplitude, base.components[2].amplitude]),
    )
    # the moving domain, drawn at path position s = 0.5 (centre of the arc), relative to its own centre
    arm = _blobs([[0.0, 0.0, 0.0], [0.05, 0.03, 0.0], [0.03, -0.04, 0.03], [-0.01, 0.02, -0.04]], 0.05)
    return Phantom(("core", "arm"), (core, arm))


HINGE_CENTER = np.array([0.05, 0.02, 0.0])  # box fractions (x, y, z)
HINGE_RADIUS = 0.21
HINGE_SWEEP_DEG = (-60.0, 60.0)


def hinge_path(s: np.ndarray) -> np.ndarray:
    """Position (…, 3) (box fractions) of the moving domain at path coordinate ``s`` ∈ [0, 1] (an arc in z = 0)."""
    s = np.asarray(s, dtype=np.float64)
    ang = np.deg2rad(HINGE_SWEEP_DEG[0] + (HINGE_SWEEP_DEG[1] - HINGE_SWEEP_DEG[0]) * s)
    return HINGE_CENTER + HINGE_RADIUS * np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], axis=-1)


def render(blobs: Blobs, box_size: int, offset_px: np.ndarray | None = None) -> np.ndarray:
    """Real-space density (D, D, D) [z, y, x] float64 of ``blobs`` translated by ``offset_px`` (x, y, z) pixels."""
    d = box_size
    ax = np.arange(d, dtype=np.float64) - d // 2
    centers = blobs.centers * d + (0.0 if offset_px is None else np.asarray(offset_px, dtype=np.float64))
    sig = blobs.sigma * d
    vol = np.zeros((d, d, d))
    for (cx, cy, cz), s, a in zip(centers, sig, blobs.amplitude):
        gx = np.exp(-0.5 * ((ax - cx) / s) ** 2)
        gy = np.exp(-0.5 * ((ax - cy) / s) ** 2)
        gz = np.exp(-0.5 * ((ax - cz) / s) ** 2)
        vol += a * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return vol


def render_particle(
    phantom: Phantom, box_size: int, amplitudes: np.ndarray, offsets_px: np.ndarray | None = None
) -> np.ndarray:
    """Volume (D, D, D) of one conformation: Σ_c amplitudes[c] · component c translated by offsets_px[c] (px)."""
    vol = np.zeros((box_size,) * 3)
    for c, blobs in enumerate(phantom.components):
        if amplitudes[c] != 0:
            off = None if offsets_px is None else offsets_px[c]
            vol += amplitudes[c] * render(blobs, box_size, off)
    return vol
