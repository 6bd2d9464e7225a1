"""Weighted back-projection of tilt images into a D³ map by Fourier-slice insertion (tensors in, tensors out).

Each image (D×D, real space) is Hartley transformed and symmetrised onto the (D+1)² lattice of
:class:`tomodrgn.physics.lattice.Lattice` (:mod:`tomodrgn.physics.hartley`), centred by its RELION origin
(:func:`tomodrgn.physics.pose.center_hartley_images`, the one shift convention), CTF-corrected and weighted
(:func:`prepare_slices`), and its central slice is added to a (D+1)³ Fourier accumulator at ``k @ A``
(:func:`tomodrgn.physics.pose.slice_coords`) together with a weight accumulator (:func:`insert_slices`).
The accumulator is indexed [z, y, x] with the zero frequency at voxel D/2 (as the volumes' centred Hartley
transforms); indices 0 and D both hold the Nyquist frequency and are folded together at the end.
Every inserted lattice point k comes with its Friedel mate −k (the lattice is symmetric), so both accumulators are
Friedel-symmetric and the inverse Hartley transform of their ratio (:func:`hartley_volume`) is the real map.

CTF correction (per lattice point, c = CTF(k) of :func:`tomodrgn.physics.ctf.compute_ctf`, t = per-image weight):
- ``phase-flip``: value t·sign(c)·h, weight t·|sign(c)|; the map is a weighted average of phase-flipped slices.
- ``wiener``: value t·c·h, weight t·c²; the map is Σ t·c·h / (Σ t·c² + K), K the Wiener constant.
- ``none``: value t·h, weight t.
CTF-premultiplied images (``ctf_params`` (n, 8) with power 2, :func:`tomodrgn.physics.ctf.premultiplied`) hold
c·(c·x) = |c| × the phase-flipped image |c|·x: for ``phase-flip`` they are not flipped again and enter with weight
t·|c| (value t·h); for ``wiener`` they already are the numerator term (value t·h, weight t·c²), as RELION
reconstructs from premultiplied data.
With ``dose_weight`` the exposure filter d(k) = exp(−N/2Ne(k)) (:func:`tomodrgn.physics.dose.dose_weights`) joins
t for phase flipping, and joins the transfer function (c → c·d) for the Wiener filter; ``tilt_weight`` multiplies t
by cos(tilt).
"""

from __future__ import annotations

import numpy as np
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.physics.ctf import compute_ctf, premultiplied
from tomodrgn.physics.dose import dose_weights, tilt_weights
from tomodrgn.physics.hartley import ht2_center, iht3_center, symmetrize_ht
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import center_hartley_images, slice_coords

CTF_MODES = ("phase-flip", "wiener", "none")
INSERTIONS = ("trilinear", "nearest")


def zero_accumulators(box_size: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Empty (numerator, weight) Fourier accumulators, float64 (D+1, D+1, D+1) each, indexed [z, y, x]."""
    shape = (box_size + 1,) * 3
    return torch.zeros(shape, dtype=torch.float64, device=device), torch.zeros(
        shape, dtype=torch.float64, device=device
    )


def lattice_points(box_size: int) -> np.ndarray:
    """Flat lattice indices inserted: radius ≤ D/2 px, the zero frequency included (it carries the mean density)."""
    return np.flatnonzero(Lattice(box_size).radius_px <= box_size / 2)


def prepare_slices(
    images: torch.Tensor,
    pixel_size: float,
    rotation: torch.Tensor,
    origin: torch.Tensor,
    ctf_params: torch.Tensor | None,
    dose: torch.Tensor | None = None,
    tilt: torch.Tensor | None = None,
    voltage: float = 300.0,
    ctf: str = "phase-flip",
    invert: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values, weights and 3-D positions of the central slices of a batch of tilt images.

    ``images`` (n, D, D) real space [y, x]; ``pixel_size`` Å; ``rotation`` (n, 3, 3) RELION matrices A; ``origin``
    (n, 2) Å (``_rlnOriginX/YAngst``); ``ctf_params`` (n, 7 | 8) as ``ParticleSeries.ctf_params`` (8: with the
    CTF's power; None: no CTF);
    ``dose`` (n,) cumulative e⁻/Å² for the exposure filter (None: off); ``tilt`` (n,) degrees for cos(tilt)
    weights (None: off); ``voltage`` kV (exposure filter). ``invert`` multiplies the images by −1.
    Returns values (n, P), weights (n, P) (float64) and positions (n, P, 3) (x, y, z) in voxels from the zero
    frequency, for the P lattice points of :func:`lattice_points`.
    """
    if ctf not in CTF_MODES:
        raise InputError(f"ctf must be one of {CTF_MODES}, got {ctf!r}")
    n, d = images.shape[0], images.shape[-1]
    device = images.device
    lattice = Lattice(d)
    keep = torch.from_numpy(lattice_points(d)).to(device)
    freqs = torch.from_numpy(lattice.freqs2d(pixel_size)).to(device)  # ((D+1)², 2) Å⁻¹
    x = images.to(torch.float64)
    if invert:
        x = -x
    h = center_hartley_images(symmetrize_ht(ht2_center(x)), freqs, origin.to(device, torch.float64))
    h = h.reshape(n, -1)[:, keep]
    k = freqs[keep]
    t = torch.ones((n, 1), dtype=torch.float64, device=device)
    if tilt is not None:
        t = t * torch.from_numpy(tilt_weights(tilt.cpu().numpy())).to(device)[:, None]
    d_k = None
    if dose is not None:
        radius = torch.linalg.vector_norm(k, dim=-1).cpu().numpy()
        d_k = torch.from_numpy(dose_weights(dose.cpu().numpy(), radius, voltage)).to(device)
    c = None
    if ctf != "none" and ctf_params is not None:
        p = ctf_params.to(device, torch.float64)
        c = compute_ctf(k, *(p[:, i] for i in range(7)))
        pre = premultiplied(p)[:, None]  # images that hold c·(c·x): already "× c", never flipped again
    if ctf == "wiener" and c is not None:
        dw = torch.ones_like(c) if d_k is None else d_k
        c = c * dw
        values, weights = t * torch.where(pre, dw, c) * h, t * c * c
    else:
        w = t if d_k is None else t * d_k
        if c is not None:
            # a premultiplied image c·(c·x) is |c| × the phase-flipped image |c|·x: it enters with weight |c|
            s = torch.where(pre, 1.0, torch.sign(c))
            values, weights = w * s * h, w * torch.where(pre, c.abs(), torch.sign(c).abs())
        else:
            values, weights = w * h, w.expand_as(h)
    coords = torch.from_numpy(lattice.coords[lattice_points(d)].astype(np.float64)).to(device)
    positions = slice_coords(coords, rotation.to(device, torch.float64)) * d
    return values, weights.contiguous(), positions


def insert_slices(
    numerator: torch.Tensor,
    weight: torch.Tensor,
    positions: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor,
    insertion: str = "trilinear",
    chunk: int = 1 << 20,
) -> None:
    """Add slices to the accumulators in place (see the module docstring).

    ``positions`` (..., 3) (x, y, z) voxels from the zero frequency; ``values``, ``weights`` (...). ``trilinear``
    spreads each point over its 8 neighbouring voxels with weights (1−|dx|)(1−|dy|)(1−|dz|); ``nearest`` adds it to
    the nearest voxel. Trilinear insertion runs ``chunk`` points at a time.
    """
    if insertion not in INSERTIONS:
        raise InputError(f"insertion must be one of {INSERTIONS}, got {insertion!r}")
    d1 = numerator.shape[0]
    # index space [0, D]; lattice points within radius D/2 lie inside it (the clamp only absorbs rounding)
    p = (positions.reshape(-1, 3).to(numerator.dtype) + (d1 - 1) // 2).clamp_(0, d1 - 1)
    v, w = values.reshape(-1).to(numerator.dtype), weights.reshape(-1).to(numerator.dtype)
    strides = torch.tensor([1, d1, d1 * d1], device=p.device)
    if insertion == "nearest":
        flat = (torch.round(p).long() * strides).sum(-1)
        numerator.view(-1).index_add_(0, flat, v)
        weight.view(-1).index_add_(0, flat, w)
        return
    for start in range(0, len(v), chunk):  # chunks bound the 8-corner temporaries (~16 bytes × 8 per point)
        sl = slice(start, start + chunk)
        _add_trilinear(numerator.view(-1), weight.view(-1), p[sl], v[sl], w[sl], strides)


def _add_trilinear(num, wsum, p, v, w, strides) -> None:
    d1 = int(strides[1])
    base = torch.floor(p).clamp_(max=d1 - 2)  # p = D sits on the upper corner of the last cell
    f = p - base
    base = base.long()
    # per-axis (lower, upper) weights and flat offsets, combined over the 8 corners by broadcasting
    wx, wy, wz = (torch.stack([1.0 - f[:, a], f[:, a]], dim=1) for a in range(3))
    ix, iy, iz = (torch.stack([base[:, a], base[:, a] + 1], dim=1) * strides[a] for a in range(3))
    frac = (wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]).reshape(-1, 8)
    flat = (iz[:, :, None, None] + iy[:, None, :, None] + ix[:, None, None, :]).reshape(-1)
    num.index_add_(0, flat, (frac * v[:, None]).reshape(-1))
    wsum.index_add_(0, flat, (frac * w[:, None]).reshape(-1))


def fold_nyquist(acc: torch.Tensor) -> torch.Tensor:
    """(D+1)³ accumulator → D³: index D (frequency +½) is the same sample as index 0 (−½) on each axis; add it."""
    out = acc
    for axis in range(3):
        n = out.shape[axis] - 1
        out = out.clone()
        out.narrow(axis, 0, 1).add_(out.narrow(axis, n, 1))
        out = out.narrow(axis, 0, n)
    return out.contiguous()


def hartley_volume(numerator: torch.Tensor, weight: torch.Tensor, regularizer: float) -> torch.Tensor:
    """Centred 3-D Hartley transform (D³) of the map: folded numerator / (folded weight + ``regularizer``)."""
    num, w = fold_nyquist(numerator), fold_nyquist(weight)
    return torch.where(w > 0, num / (w + regularizer), torch.zeros_like(num))


def real_volume(numerator: torch.Tensor, weight: torch.Tensor, regularizer: float) -> np.ndarray:
    """The real-space map (D, D, D) float32 [z, y, x], origin at voxel D/2, in the images' density units."""
    return iht3_center(hartley_volume(numerator, weight, regularizer)).cpu().numpy().astype(np.float32)


def lowpass_volume(vol: np.ndarray, pixel_size: float, resolution: float, edge_shells: float = 2.0) -> np.ndarray:
    """Low-pass a volume (D, D, D) to ``resolution`` Å: a raised-cosine edge ``edge_shells`` Fourier shells wide
    centred on the cutoff frequency 1/resolution Å⁻¹. Returns float32."""
    vol = np.asarray(vol, dtype=np.float64)
    d = vol.shape[0]
    k = np.fft.fftfreq(d) * d  # shells
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    cutoff = d * pixel_size / resolution  # shells
    ramp = np.clip((r - cutoff) / edge_shells + 0.5, 0.0, 1.0)
    filt = 0.5 * (1.0 + np.cos(np.pi * ramp))
    return np.fft.ifftn(np.fft.fftn(vol) * filt).real.astype(np.float32)
