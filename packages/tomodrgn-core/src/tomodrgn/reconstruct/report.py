"""What a back-projection tells the user: the density sign of a map, the half-map FSC table, PNG views."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tomodrgn.reconstruct.backproject import lowpass_volume  # noqa: E402

SIGN_THRESHOLD = 1.0  # |contrast| below this: "unclear" (noise maps: |c| < 0.5 white, < 1 smooth)


def radial_distance(box_size: int) -> np.ndarray:
    """Distance (voxels) of each voxel of a D³ box from the rotation origin at voxel D/2, shape (D, D, D)."""
    ax = np.arange(box_size) - box_size // 2
    return np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)


def spherical_mask(box_size: int, radius: float | None = None, edge: float | None = None) -> np.ndarray:
    """Soft spherical mask: 1 within ``radius`` voxels (default 0.4·D) of voxel D/2, raised-cosine edge of ``edge``
    voxels (default 0.1·D) to 0; float32 (D, D, D)."""
    radius = 0.4 * box_size if radius is None else radius
    edge = 0.1 * box_size if edge is None else edge
    ramp = np.clip((radial_distance(box_size) - radius) / max(edge, 1e-9), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * ramp))).astype(np.float32)


def density_contrast(vol: np.ndarray, pixel_size: float = 1.0) -> float:
    """Low-resolution contrast of the box centre against the box edge, in units of the map's standard deviation.

    The map is low-passed to 8 pixels (0.125 cycles/px, the particle's overall shape), then
    (mean within D/4 of the centre − mean beyond 3D/8) / std. A particle centred in its box (as the origins
    centre it) with positive density gives a clearly positive value, with inverted contrast a clearly negative one;
    the difference ignores the map's overall offset (the zero frequency depends on how the images were normalised).
    Measured: simulated particles (noiseless to SNR 0.01, 20–100 particles) give ±2.6; maps of pure noise give
    |value| < 0.5 (white) and < 1 (smoothed with a 3-voxel gaussian), hence the threshold 1 of :func:`density_sign`.
    """
    vol = np.asarray(vol, dtype=np.float64)
    d = vol.shape[0]
    low = lowpass_volume(vol, pixel_size, 8.0 * pixel_size).astype(np.float64)
    r = radial_distance(d)
    std = low.std()
    if not std > 0:
        return 0.0
    return float((low[r <= d / 4].mean() - low[r >= 3 * d / 8].mean()) / std)


def density_sign(contrast: float, threshold: float = SIGN_THRESHOLD) -> str:
    """ "positive", "negative" or "unclear" for a :func:`density_contrast` value."""
    if contrast > threshold:
        return "positive"
    if contrast < -threshold:
        return "negative"
    return "unclear"


def write_fsc_table(path: str | Path, freq: np.ndarray, curve: np.ndarray) -> Path:
    """Text table: shell, frequency (Å⁻¹), resolution (Å), FSC; one row per Fourier shell."""
    path = Path(path)
    with np.errstate(divide="ignore"):
        res = np.where(freq > 0, 1.0 / np.where(freq > 0, freq, 1.0), np.inf)
    rows = np.column_stack([np.arange(len(freq)), freq, res, curve])
    np.savetxt(path, rows, fmt=["%d", "%.6f", "%.2f", "%.4f"], header="shell freq_1/A resolution_A fsc")
    return path


def plot_central_slices(vol: np.ndarray, out: str | Path, title: str = "") -> Path:
    """PNG of the central (z, y, x) slices of a volume [z, y, x] through voxel D/2."""
    vol = np.asarray(vol, dtype=np.float32)
    c = vol.shape[0] // 2
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    lo, hi = np.percentile(vol, [1, 99.5])
    for ax, img, name in zip(
        axes, (vol[c], vol[:, c], vol[:, :, c]), ("z = D/2 (x→, y↓)", "y = D/2 (x→, z↓)", "x = D/2 (y→, z↓)")
    ):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, origin="upper")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    out = Path(out)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
