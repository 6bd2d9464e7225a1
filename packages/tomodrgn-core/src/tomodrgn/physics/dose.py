"""Electron-dose conventions: critical/optimal exposure, dose weights, the dose (lattice) mask, tilt weights.

Critical exposure after Grant & Grigorieff (2015): Ne(k) = a·|k|^b + c (e⁻/Å², |k| in Å⁻¹) at 300 kV, × 0.8 at
200 kV. Optimal exposure = 2.51284 · Ne(k). Doses are cumulative e⁻/Å² at the *end* of each tilt's exposure.
"""

from __future__ import annotations

import numpy as np

CRITICAL_EXPOSURE_A = 0.24499
CRITICAL_EXPOSURE_B = -1.6649
CRITICAL_EXPOSURE_C = 2.8141
OPTIMAL_EXPOSURE_FACTOR = 2.51284


def voltage_scale(voltage_kv: float) -> float:
    """Scale of the critical exposure for an acceleration voltage: 1 at 300 kV, 0.8 at 200 kV."""
    if abs(voltage_kv - 300) < 1:
        return 1.0
    if abs(voltage_kv - 200) < 1:
        return 0.8
    # linear between the two calibrated points (and beyond), the usual practice
    return 0.8 + 0.2 * (voltage_kv - 200) / 100


def critical_exposure(freq: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """Critical exposure Ne (e⁻/Å²) at spatial frequency ``freq`` (Å⁻¹); +inf at freq 0."""
    freq = np.asarray(freq, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ne = CRITICAL_EXPOSURE_A * np.power(freq, CRITICAL_EXPOSURE_B) + CRITICAL_EXPOSURE_C
    return ne * voltage_scale(voltage_kv)


def optimal_exposure(freq: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """Optimal exposure (e⁻/Å²) = 2.51284 · Ne(k)."""
    return OPTIMAL_EXPOSURE_FACTOR * critical_exposure(freq, voltage_kv)


def dose_weights(cumulative_dose: np.ndarray, freq: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """Exposure-filter weights exp(−N / (2·Ne(k))), shape (..., n_tilts, n_points).

    ``cumulative_dose`` (..., n_tilts) in e⁻/Å²; ``freq`` (n_points,) in Å⁻¹.
    """
    n = np.asarray(cumulative_dose, dtype=np.float64)[..., None]
    return np.exp(-n / (2.0 * critical_exposure(freq, voltage_kv)))


def dose_per_tilt(cumulative_dose: np.ndarray) -> np.ndarray:
    """Dose of each tilt's own exposure (e⁻/Å²), from cumulative doses in any order (last axis = tilts).

    Sorted by cumulative dose, each tilt's dose is the step from the one before (the first: its own cumulative
    dose). A particle whose tilt series lost images has larger steps across the gaps; those steps are capped at the
    particle's smallest positive step, so a dropped tilt does not lower the next tilt's mid-exposure dose.
    """
    n = np.asarray(cumulative_dose, dtype=np.float64)
    order = np.argsort(n, axis=-1, kind="stable")
    s = np.take_along_axis(n, order, axis=-1)
    steps = np.diff(s, axis=-1, prepend=0.0)
    positive = np.where(steps > 0, steps, np.inf)
    smallest = positive.min(axis=-1, keepdims=True)
    steps = np.where(np.isfinite(smallest), np.minimum(steps, smallest), steps)
    out = np.empty_like(n)
    np.put_along_axis(out, order, steps, axis=-1)
    return out


def dose_mask(cumulative_dose: np.ndarray, freq: np.ndarray, voltage_kv: float = 300.0) -> np.ndarray:
    """Optimal-dose lattice mask, shape (..., n_tilts, n_points), True = keep.

    A pixel is kept when the tilt's mid-exposure dose N − d/2 (d: that tilt's own dose) is below the optimal
    exposure at its |k|. With 41 tilts × 3 e⁻/Å² this reproduces the counts in ``docs/architecture.md``, "Physics".
    """
    n = np.asarray(cumulative_dose, dtype=np.float64)
    mid = n - dose_per_tilt(n) / 2.0
    return mid[..., None] < optimal_exposure(freq, voltage_kv)


def tilt_weights(tilt_deg: np.ndarray) -> np.ndarray:
    """Per-image weight cos(tilt), tilt in degrees."""
    return np.cos(np.deg2rad(np.asarray(tilt_deg, dtype=np.float64)))
