"""Latent-space analysis: PCA, UMAP, k-means, on-data cluster centres, PC traversals and straight paths.

``z`` is always an array (n_particles, zdim) of latent means in the training STAR's particle order.
Random seeds are explicit so every result is reproducible.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from tomodrgn.io.errors import InputError


def _as_z(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"expected z of shape (n_particles, zdim), got {z.shape}")
    if not np.all(np.isfinite(z)):
        bad = np.nonzero(~np.isfinite(z).all(axis=1))[0][:5]
        raise InputError(f"z contains NaN/inf (particles {bad.tolist()} …)")
    return z


@dataclass
class PCAResult:
    """PCA of z: ``coords`` (n, n_pc) projections, ``components`` (n_pc, zdim) unit axes, ``mean`` (zdim,),
    ``explained_variance`` (n_pc,) and ``explained_variance_ratio`` (n_pc,)."""

    coords: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray


def pca(z: np.ndarray, n: int | None = None) -> PCAResult:
    """Principal components of z; ``n`` is clipped to min(n_particles, zdim) (default: all)."""
    z = _as_z(z)
    n_max = min(z.shape)
    n = n_max if n is None else max(1, min(n, n_max))
    model = PCA(n_components=n, svd_solver="full").fit(z)
    return PCAResult(
        coords=model.transform(z),
        components=model.components_,
        mean=model.mean_,
        explained_variance=model.explained_variance_,
        explained_variance_ratio=model.explained_variance_ratio_,
    )


def umap_embed(z: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP embedding (n, 2) of z (umap-learn, fixed ``seed``).

    With fewer than 10 particles UMAP is meaningless; the first two principal components are returned instead
    with a warning (zero-padded if zdim or n is < 2).
    """
    z = _as_z(z)
    if z.shape[0] < 10:
        warnings.warn(f"UMAP needs ≥ 10 particles, got {z.shape[0]}: using PCA instead", stacklevel=2)
        coords = pca(z, 2).coords if z.shape[0] > 1 else np.zeros((z.shape[0], 1))
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    import umap  # slow import (numba); only when needed

    torch = sys.modules.get("torch")  # numba's threading layer resets torch's thread count: put it back after
    threads = torch.get_num_threads() if torch is not None else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            reducer = umap.UMAP(
                n_components=2, n_neighbors=min(n_neighbors, z.shape[0] - 1), min_dist=min_dist, random_state=seed
            )
            return np.asarray(reducer.fit_transform(z), dtype=np.float64)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)


def kmeans(z: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means clustering of z: returns ``(labels (n,) int64 in 0..k-1, centres (k, zdim))``."""
    z = _as_z(z)
    if not 1 <= k <= z.shape[0]:
        raise InputError(f"kmeans: k = {k} must be between 1 and the number of particles ({z.shape[0]})")
    model = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(z)
    return model.labels_.astype(np.int64), model.cluster_centers_


def nearest_to_centres(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the particle whose z is nearest (Euclidean) to each centre: (k,) int64 (on-data centres)."""
    z = _as_z(z)
    centres = np.atleast_2d(np.asarray(centres, dtype=np.float64))
    # |c|² − 2 c·z + |z|² for a block of centres at a time: memory ~ 2²² distances, not k × n (k = n: every particle)
    z2 = (z**2).sum(1)[None, :]
    step = max(1, (1 << 22) // max(len(z), 1))
    out = np.empty(len(centres), dtype=np.int64)
    for i in range(0, len(centres), step):
        c = centres[i : i + step]
        out[i : i + step] = np.argmin((c**2).sum(1)[:, None] - 2.0 * c @ z.T + z2, axis=1)
    return out


def pc_traversal(
    z: np.ndarray,
    pc: int = 1,
    n_points: int = 10,
    lo_percentile: float = 5.0,
    hi_percentile: float = 95.0,
    even_percentiles: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Points along principal component ``pc`` (1-based: PC1, PC2, …) of z.

    The PC coordinate runs evenly from its ``lo_percentile`` to its ``hi_percentile`` value over the particles
    (``even_percentiles``: at evenly spaced percentiles between them, the published tomoDRGN's
    ``--use-percentile-spacing``); the other PCs are held at 0 (the mean of z). Returns ``(z_points (n_points,
    zdim), pc_values (n_points,))``.
    """
    z = _as_z(z)
    res = pca(z)
    if not 1 <= pc <= res.components.shape[0]:
        raise InputError(f"pc_traversal: PC{pc} does not exist (z has {res.components.shape[0]} components)")
    proj = res.coords[:, pc - 1]
    if even_percentiles:
        values = np.percentile(proj, np.linspace(lo_percentile, hi_percentile, n_points))
    else:
        values = np.linspace(np.percentile(proj, lo_percentile), np.percentile(proj, hi_percentile), n_points)
    return res.mean + values[:, None] * res.components[pc - 1][None, :], values


def path_between(z0: np.ndarray, z1: np.ndarray, n: int) -> np.ndarray:
    """``n`` points (n, zdim) evenly spaced on the straight line from ``z0`` to ``z1`` (both included)."""
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    if z0.shape != z1.shape:
        raise InputError(f"path_between: z0 {z0.shape} and z1 {z1.shape} differ in shape")
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * z0[None, :] + t * z1[None, :]
