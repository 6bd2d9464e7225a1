"""Heterogeneity presets: which phantom, and how each particle's conformation is drawn.

- ``homogeneous``: the complete ribosome-like molecule, one class.
- ``4-class``: compositional heterogeneity like assembly intermediates: class 0 complete, class 1 lacks domain A,
  class 2 lacks B, class 3 lacks C (each domain ~15–20 % of the mass); classes drawn uniformly.
- ``2-class``: two assembly states of the same molecule: class 0 complete, class 1 lacks domain A; exactly
  balanced (⌈n/2⌉ / ⌊n/2⌋ particles, in random order) so small datasets have equal classes.
- ``continuous``: a core plus one domain swinging along a 120° arc; the path coordinate s ~ U(0, 1) is the continuous
  ground truth, the label is s discretised into :data:`N_CONTINUOUS_BINS` bins (one reference volume per bin
  centre).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.simulate.phantom import Phantom, hinge_path, hinged, ribosome_like

N_CONTINUOUS_BINS = 10


@dataclass(frozen=True)
class Conformations:
    """Per-particle conformations.

    labels (n,) int; coordinate (n,) float (continuous path position, NaN for discrete presets);
    amplitudes (n, C) component weights; offsets (n, C, 3) component translations (x, y, z) in box fractions.
    """

    labels: np.ndarray
    coordinate: np.ndarray
    amplitudes: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Preset:
    """A phantom, its reference conformations (one volume each) and a sampler of particle conformations."""

    name: str
    phantom: Phantom
    reference: Conformations  # one row per written ground-truth volume; row i has label i
    sample: Callable[[int, np.random.Generator], Conformations]


def _discrete(name: str, phantom: Phantom, membership: np.ndarray, balanced: bool = False) -> Preset:
    k, c = membership.shape
    ref = Conformations(np.arange(k), np.full(k, np.nan), membership.astype(np.float64), np.zeros((k, c, 3)))

    def sample(n: int, rng: np.random.Generator) -> Conformations:
        labels = rng.permutation(np.arange(n) % k) if balanced else rng.integers(0, k, size=n)
        return Conformations(labels, np.full(n, np.nan), ref.amplitudes[labels], np.zeros((n, c, 3)))

    return Preset(name, phantom, ref, sample)


def _continuous_conf(s: np.ndarray) -> Conformations:
    s = np.asarray(s, dtype=np.float64)
    n = len(s)
    labels = np.minimum((s * N_CONTINUOUS_BINS).astype(np.int64), N_CONTINUOUS_BINS - 1)
    offsets = np.zeros((n, 2, 3))
    offsets[:, 1] = hinge_path(s)
    return Conformations(labels, s, np.ones((n, 2)), offsets)


def _continuous() -> Preset:
    centres = (np.arange(N_CONTINUOUS_BINS) + 0.5) / N_CONTINUOUS_BINS
    return Preset(
        "continuous", hinged(), _continuous_conf(centres), lambda n, rng: _continuous_conf(rng.uniform(0, 1, n))
    )


def get_preset(name: str) -> Preset:
    """Preset by name: ``homogeneous``, ``2-class``, ``4-class`` or ``continuous``."""
    if name == "homogeneous":
        return _discrete(name, ribosome_like(), np.ones((1, 4)))
    if name == "4-class":
        return _discrete(name, ribosome_like(), 1.0 - np.vstack([np.zeros(4), np.eye(4)[1:]]))
    if name == "2-class":
        return _discrete(name, ribosome_like(), np.array([[1.0, 1, 1, 1], [1, 0, 1, 1]]), balanced=True)
    if name == "continuous":
        return _continuous()
    raise InputError(f"unknown simulation preset {name!r}; choose one of {PRESETS}")


PRESETS = ("homogeneous", "2-class", "4-class", "continuous")
