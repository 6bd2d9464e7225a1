"""Volume and clustering metrics: FSC, resolution, soft mask, real-space CC, ARI, matched confusion matrix.

Volumes are numpy arrays (D, D, D) indexed (z, y, x) as in MRC files; pixel sizes in Å, frequencies in Å⁻¹.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from tomodrgn.io.errors import InputError


def _check_pair(vol1: np.ndarray, vol2: np.ndarray) -> None:
    if vol1.shape != vol2.shape:
        raise InputError(f"volume shapes differ: {vol1.shape} vs {vol2.shape}")
    if vol1.ndim != 3 or len(set(vol1.shape)) != 1:
        raise InputError(f"expected cubic volumes (D, D, D), got shape {vol1.shape}")


def fsc(
    vol1: np.ndarray, vol2: np.ndarray, pixel_size: float = 1.0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two cubic volumes.

    Shells are centred at i/(D·pixel_size) Å⁻¹, i = 0 … D//2 (Nyquist); each Fourier voxel of the full 3-D FFT
    contributes to its two nearest shells with linear weights max(0, 1 − |r − i|) (r in voxels), the same shell
    definition as ``torch-fourier-shell-correlation``. The DC shell is 1 by definition. ``mask`` (real space,
    values in [0, 1]) multiplies both volumes first. Returns ``(freq Å⁻¹, fsc)``, both float64 (D//2 + 1,).
    """
    v1, v2 = np.asarray(vol1, dtype=np.float64), np.asarray(vol2, dtype=np.float64)
    _check_pair(v1, v2)
    if mask is not None:
        v1, v2 = v1 * mask, v2 * mask
    d = v1.shape[0]
    n_shells = d // 2 + 1
    f1, f2 = np.fft.fftn(v1).ravel(), np.fft.fftn(v2).ravel()
    k = np.fft.fftfreq(d) * d  # voxels
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2).ravel()
    lo = np.floor(r).astype(np.int64)
    frac = r - lo
    sums = np.zeros((3, n_shells + 1))
    terms = ((f1 * np.conj(f2)).real, np.abs(f1) ** 2, np.abs(f2) ** 2)
    for row, t in zip(sums, terms):
        row += np.bincount(np.minimum(lo, n_shells), weights=t * (1 - frac), minlength=n_shells + 1)[: n_shells + 1]
        row += np.bincount(np.minimum(lo + 1, n_shells), weights=t * frac, minlength=n_shells + 1)[: n_shells + 1]
    num, den = sums[0, :n_shells], np.sqrt(sums[1, :n_shells] * sums[2, :n_shells])
    curve = np.divide(num, den, out=np.zeros(n_shells), where=den > 0)
    curve[0] = 1.0
    freq = np.arange(n_shells) / (d * pixel_size)
    return freq, curve


def resolution_at(freq: np.ndarray, fsc_curve: np.ndarray, threshold: float = 0.143) -> float:
    """Resolution (Å) where the FSC first drops below ``threshold`` (e.g. 0.5 or 0.143).

    The crossing frequency is linearly interpolated between the two shells around it. If the curve never drops
    below the threshold the Nyquist resolution (1 / last frequency) is returned.
    """
    freq, fsc_curve = np.asarray(freq, dtype=np.float64), np.asarray(fsc_curve, dtype=np.float64)
    below = np.nonzero(fsc_curve[1:] < threshold)[0]
    if below.size == 0:
        return float(1.0 / freq[-1])
    i = below[0] + 1  # first shell below threshold; i - 1 is at or above it
    f0, f1, c0, c1 = freq[i - 1], freq[i], fsc_curve[i - 1], fsc_curve[i]
    f_cross = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0) if c0 != c1 else f1
    return float(1.0 / f_cross) if f_cross > 0 else float("inf")


def soft_mask(vol: np.ndarray, threshold: float | None = None, dilate_px: int = 3, edge_px: int = 10) -> np.ndarray:
    """Soft solvent mask (``docs/architecture.md``, "Analysis outputs"): binarise, dilate, cosine edge.

    Voxels ≥ ``threshold`` (default ½ of the volume's 99th percentile) are inside; the binary mask is dilated by
    ``dilate_px`` voxels (Euclidean distance) and falls from 1 to 0 with a raised cosine over the next
    ``edge_px`` voxels. Returns float32 in [0, 1], same shape as ``vol``.
    """
    vol = np.asarray(vol, dtype=np.float32)
    if threshold is None:
        threshold = 0.5 * float(np.percentile(vol, 99))
    inside = vol >= threshold
    if not inside.any():
        raise InputError(f"soft_mask: no voxel reaches the threshold {threshold:g}")
    dist = ndimage.distance_transform_edt(~inside)  # 0 inside, distance (voxels) to the object outside
    mask = np.zeros(vol.shape, dtype=np.float32)
    mask[dist <= dilate_px] = 1.0
    if edge_px > 0:
        ramp = (dist > dilate_px) & (dist < dilate_px + edge_px)
        mask[ramp] = 0.5 * (1.0 + np.cos(np.pi * (dist[ramp] - dilate_px) / edge_px))
    return mask


def cc(vol1: np.ndarray, vol2: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Real-space Pearson correlation of two volumes; ``mask`` (values ≥ 0) weights each voxel."""
    a, b = np.asarray(vol1, dtype=np.float64).ravel(), np.asarray(vol2, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"volume shapes differ: {np.shape(vol1)} vs {np.shape(vol2)}")
    w = np.ones_like(a) if mask is None else np.asarray(mask, dtype=np.float64).ravel()
    if w.shape != a.shape:
        raise InputError(f"mask shape {np.shape(mask)} differs from volume shape {np.shape(vol1)}")
    sw = w.sum()
    if sw <= 0:
        raise InputError("cc: mask is empty")
    da, db = a - (w * a).sum() / sw, b - (w * b).sum() / sw
    den = np.sqrt((w * da * da).sum() * (w * db * db).sum())
    return float((w * da * db).sum() / den) if den > 0 else 0.0


def cc_to_reference(volumes: Iterable[np.ndarray], ref: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """CC of each volume with ``ref``, streamed; items are single volumes (D,D,D) or chunks (n,D,D,D)."""
    out: list[float] = []
    for item in volumes:
        item = np.asarray(item)
        for v in item if item.ndim == 4 else item[None]:
            out.append(cc(v, ref, mask))
    return np.asarray(out, dtype=np.float64)


def adjusted_rand_index(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (1 = identical partitions up to renaming, ~0 = random)."""
    return float(adjusted_rand_score(np.asarray(labels_true), np.asarray(labels_pred)))


@dataclass
class ConfusionResult:
    """Confusion matrix with predicted clusters matched to true classes.

    ``matrix[i, j]`` counts particles of true class ``true_labels[i]`` in predicted cluster ``pred_labels[j]``;
    columns are ordered so that matched pairs lie on the diagonal (unmatched clusters last).
    ``mapping`` maps each matched predicted label to its true label; ``accuracy`` = matched fraction.
    """

    matrix: np.ndarray
    true_labels: np.ndarray
    pred_labels: np.ndarray
    mapping: dict
    accuracy: float


def confusion_matrix(labels_true: np.ndarray, labels_pred: np.ndarray) -> ConfusionResult:
    """Confusion matrix with the best one-to-one matching of clusters to classes (Hungarian algorithm)."""
    lt, lp = np.asarray(labels_true), np.asarray(labels_pred)
    if lt.shape != lp.shape:
        raise InputError(f"label arrays differ in length: {lt.shape} vs {lp.shape}")
    t_names, ti = np.unique(lt, return_inverse=True)
    p_names, pi = np.unique(lp, return_inverse=True)
    m = np.zeros((len(t_names), len(p_names)), dtype=np.int64)
    np.add.at(m, (ti, pi), 1)
    rows, cols = linear_sum_assignment(-m)
    order = list(cols[np.argsort(rows)])
    order += [j for j in range(len(p_names)) if j not in set(order)]
    mapping = {p_names[c].item(): t_names[r].item() for r, c in zip(rows, cols)}
    accuracy = float(m[rows, cols].sum() / max(len(lt), 1))
    return ConfusionResult(m[:, order], t_names, p_names[order], mapping, accuracy)


def named_mask(kind: bool | str, vol: np.ndarray) -> np.ndarray:
    """The masks the published tomoDRGN names for FSCs: ``soft`` (or True) :func:`soft_mask`; ``sphere`` the ball
    inscribed in the box (r ≤ D/2 voxels from voxel D/2); ``tight`` the voxels ≥ ½ the map's 99.99th percentile."""
    vol = np.asarray(vol, dtype=np.float32)
    if kind is True or kind == "soft":
        return soft_mask(vol)
    if kind == "sphere":
        d = vol.shape[0]
        grid = np.indices(vol.shape) - d // 2
        return (np.sqrt((grid**2).sum(0)) <= d // 2).astype(np.float32)
    if kind == "tight":
        return (vol >= np.percentile(vol, 99.99) / 2).astype(np.float32)
    raise InputError(f"mask must be soft, sphere or tight, got {kind!r}")
