"""Analyses over decoded volumes: streamed volume-space PCA and convergence across training epochs.

A *decoder* is any callable ``z (n, zdim) -> volumes (n, D, D, D)`` (e.g. ``load_model(run_dir).decode``).
Volumes are produced in chunks so memory stays bounded by ``chunk_size`` volumes whatever the particle count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tomodrgn.analysis.latent import kmeans, nearest_to_centres
from tomodrgn.analysis.metrics import adjusted_rand_index, cc
from tomodrgn.io.errors import InputError
from tomodrgn.runs.folder import RunFolder

Decoder = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]


def iter_decoded(
    z: np.ndarray, decode: Decoder, chunk_size: int = 16, progress: Progress | None = None
) -> Iterator[np.ndarray]:
    """Decode z in chunks; yields arrays (≤ chunk_size, D, D, D). ``progress(done, total)`` after each chunk."""
    z = np.asarray(z)
    for start in range(0, len(z), chunk_size):
        vols = np.asarray(decode(z[start : start + chunk_size]))
        if vols.ndim == 3:
            vols = vols[None]
        yield vols
        if progress is not None:
            progress(min(start + chunk_size, len(z)), len(z))


@dataclass
class VolumePCA:
    """PCA of volumes: ``mean`` (D,D,D), ``components`` (n, D,D,D) unit-norm, ``explained_variance_ratio`` (n,)
    (fraction of the total variance of the volumes), ``coords`` (n_volumes, n) projections."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    coords: np.ndarray


def _rebatch(chunks: Iterable[np.ndarray], batch: int) -> Iterator[np.ndarray]:
    """Flattened (m, D³) batches of at least ``batch`` rows (the last one may absorb a short tail)."""
    buf: list[np.ndarray] = []
    n = 0
    pending: np.ndarray | None = None
    for c in chunks:
        c = np.asarray(c, dtype=np.float64)
        c = c.reshape(1 if c.ndim == 3 else c.shape[0], -1)
        buf.append(c)
        n += len(c)
        if n >= batch:
            if pending is not None:
                yield pending
            pending, buf, n = np.concatenate(buf), [], 0
    if buf:
        tail = np.concatenate(buf)
        pending = tail if pending is None else np.concatenate([pending, tail])
    if pending is not None:
        yield pending


class StreamedPCA:
    """Incremental PCA of rows arriving in batches: Ross et al. (2008), the algorithm of sklearn's
    ``IncrementalPCA`` (same mean correction, same components, signs as its ``svd_flip``), with one change: the SVD
    of the small stacked matrix M (m × p: the kept components, the centred batch, the mean correction) is taken
    through its Gram matrix M·Mᵀ (m × m). For volumes p = D³ ≫ m, and LAPACK's SVD of M took 4–6 s a batch at
    D = 64, m = 68 on one core (most of ``analyze_volumes`` after decoding); the Gram route takes ~0.1 s. Only the
    top components are kept, whose eigenvalues are the largest, so squaring costs them no precision that matters."""

    def __init__(self, n_components: int) -> None:
        self.n_components = n_components
        self.n_seen = 0
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None  # (k, p) unit rows
        self.singular_values_: np.ndarray | None = None

    def partial_fit(self, x: np.ndarray) -> StreamedPCA:
        x = np.asarray(x, dtype=np.float64)
        n_b = len(x)
        batch_mean = x.mean(0)
        m = x - batch_mean
        if self.n_seen:
            correction = np.sqrt(self.n_seen * n_b / (self.n_seen + n_b)) * (self.mean_ - batch_mean)
            m = np.vstack([self.singular_values_[:, None] * self.components_, m, correction[None]])
        w, u = np.linalg.eigh(m @ m.T)
        top = np.argsort(w)[::-1][: self.n_components]
        s = np.sqrt(np.clip(w[top], 0.0, None))
        v = u[:, top].T @ m
        v /= np.where(s > 0, s, 1.0)[:, None]
        v *= np.sign(v[np.arange(len(v)), np.abs(v).argmax(1)])[:, None]  # largest |entry| of each row positive
        self.mean_ = (
            batch_mean if not self.n_seen else (self.n_seen * self.mean_ + n_b * batch_mean) / (self.n_seen + n_b)
        )
        self.n_seen += n_b
        self.components_, self.singular_values_ = v, s
        return self

    @property
    def explained_variance_(self) -> np.ndarray:
        return self.singular_values_**2 / max(self.n_seen - 1, 1)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_) @ self.components_.T


def volume_pca(
    chunks: Callable[[], Iterable[np.ndarray]],
    n_components: int = 3,
    batch_size: int = 64,
    mask: np.ndarray | None = None,
) -> VolumePCA:
    """Streamed PCA across volumes (:class:`StreamedPCA`; memory ~ batch_size volumes).

    ``chunks`` is a factory returning a fresh iterable of volumes (D,D,D) or chunks (m,D,D,D); it is called twice
    (fit, then projection). ``mask`` (D,D,D) multiplies every volume first. Needs at least ``n_components``
    volumes.
    """
    batch = max(batch_size, n_components)
    flat_mask = None if mask is None else np.asarray(mask, dtype=np.float64).ravel()
    model = StreamedPCA(n_components)
    shape: tuple[int, ...] | None = None
    total_var = 0.0
    n_seen = 0
    sum_x = None
    sum_x2 = 0.0
    for x in _rebatch(chunks(), batch):
        if shape is None:
            d = round(x.shape[1] ** (1 / 3))
            shape = (d, d, d)
        if flat_mask is not None:
            x = x * flat_mask
        if len(x) < n_components:
            raise InputError(f"volume_pca: {len(x)} volumes, need at least n_components = {n_components}")
        model.partial_fit(x)
        sum_x = x.sum(0) if sum_x is None else sum_x + x.sum(0)
        sum_x2 += float((x * x).sum())
        n_seen += len(x)
    if shape is None:
        raise InputError("volume_pca: no volumes")
    total_var = (sum_x2 - float((sum_x * sum_x).sum()) / n_seen) / max(n_seen - 1, 1)
    coords = []
    for x in _rebatch(chunks(), batch):
        coords.append(model.transform(x if flat_mask is None else x * flat_mask))
    return VolumePCA(
        mean=model.mean_.reshape(shape).astype(np.float32),
        components=model.components_.reshape((-1, *shape)).astype(np.float32),
        explained_variance_ratio=model.explained_variance_ / total_var if total_var > 0 else model.explained_variance_,
        coords=np.concatenate(coords),
    )


def list_epochs(run_dir: str | Path) -> list[int]:
    """Epochs that have a saved latent ``z.N.npy`` in a training run directory, ascending."""
    return RunFolder(run_dir).latent_epochs()


def latent_convergence(z_a: np.ndarray, z_b: np.ndarray, k: int = 20, seed: int = 0) -> dict[str, float]:
    """How similar two epochs' latents (same particles, same order) are.

    - ``r2_linear``: fraction of the variance of ``z_b`` explained by an affine map of ``z_a`` (1 = same space up
      to rotation/scale/shift, which the model may legitimately change between epochs);
    - ``mean_abs_corr``: mean |Pearson r| of matching latent dimensions;
    - ``kmeans_ari``: ARI of the k-means labelings (k clipped to the particle count) of the two epochs.
    """
    z_a, z_b = np.asarray(z_a, dtype=np.float64), np.asarray(z_b, dtype=np.float64)
    if z_a.shape != z_b.shape:
        raise InputError(f"latent_convergence: z shapes differ ({z_a.shape} vs {z_b.shape})")
    x = np.hstack([z_a, np.ones((len(z_a), 1))])
    coef, *_ = np.linalg.lstsq(x, z_b, rcond=None)
    resid = z_b - x @ coef
    var_b = ((z_b - z_b.mean(0)) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / var_b if var_b > 0 else 1.0
    corr = [abs(np.corrcoef(z_a[:, i], z_b[:, i])[0, 1]) for i in range(z_a.shape[1])]
    kk = min(k, len(z_a))
    ari = adjusted_rand_index(kmeans(z_a, kk, seed)[0], kmeans(z_b, kk, seed)[0])
    return {"r2_linear": float(r2), "mean_abs_corr": float(np.nanmean(corr)), "kmeans_ari": ari}


def convergence(
    run_dir: str | Path,
    epochs: list[int] | None = None,
    k: int = 20,
    seed: int = 0,
    decoder_for_epoch: Callable[[int], Decoder] | None = None,
    n_volumes: int = 5,
) -> list[dict[str, float]]:
    """Convergence across epochs of a training run; one dict per consecutive epoch pair (e_prev, e).

    Latent: :func:`latent_convergence` of z.e_prev.npy vs z.e.npy. Volume (when ``decoder_for_epoch(e)`` is given,
    e.g. ``lambda e: load_model(run_dir, e).decode``): ``n_volumes`` particles nearest the k-means centres of the
    last epoch are decoded at each epoch from that epoch's own z; ``volume_cc`` is their mean real-space CC
    between the two epochs.
    """
    run_dir = Path(run_dir)
    epochs = list_epochs(run_dir) if epochs is None else sorted(epochs)
    if len(epochs) < 2:
        raise InputError(f"convergence: need ≥ 2 epochs with z.N.npy in {run_dir}, found {epochs}")
    zs = {e: np.load(RunFolder(run_dir).z(e)) for e in epochs}
    picks = None
    if decoder_for_epoch is not None:
        z_last = zs[epochs[-1]]
        _, centres = kmeans(z_last, min(n_volumes, len(z_last)), seed)
        picks = np.unique(nearest_to_centres(z_last, centres))
    rows = []
    prev_vols = None
    for i, e in enumerate(epochs):
        vols = None if picks is None else np.asarray(decoder_for_epoch(e)(zs[e][picks]))
        if i > 0:
            row = {"epoch_prev": epochs[i - 1], "epoch": e, **latent_convergence(zs[epochs[i - 1]], zs[e], k, seed)}
            if vols is not None:
                row["volume_cc"] = float(np.mean([cc(a, b) for a, b in zip(prev_vols, vols)]))
            rows.append(row)
        prev_vols = vols
    return rows
