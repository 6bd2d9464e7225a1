"""The data's signal amplitude per Fourier shell, measured before training, for the decoder's output envelope.

Two half-set back-projections of the training images (the dataset's own normalised, windowed Hartley images, centred
by their origins) estimate the map's Hartley transform twice with independent noise: each voxel V_h = Σ c·Y / Σ c²,
with c the forward model's per-pixel factor (CTF, ² for premultiplied images, times the exposure filter when the run
uses it) and nearest-voxel insertion of the central slices at ``k @ A``. The mean of V₁·V₂ over a shell is the signal
power there, unbiased by the noise (which the halves do not share), so its square root is the rms signal amplitude
A(r) in the decoder's output units, and its standard error says where the data hold no measurable signal.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from tomodrgn.data.dataset import TiltSeriesDataset, collate
from tomodrgn.models.vae import TomoDRGN
from tomodrgn.physics.ctf import image_ctf
from tomodrgn.physics.dose import dose_weights
from tomodrgn.physics.lattice import Lattice
from tomodrgn.physics.pose import center_hartley_images, slice_coords
from tomodrgn.reconstruct.backproject import insert_slices, zero_accumulators
from tomodrgn.reconstruct.report import radial_distance
from tomodrgn.runs.config import TrainConfig

MAX_PARTICLES = 1000  # particles back-projected (at random, seeded): enough for the profile, cheap on large sets
FLOOR_RATIO = 0.1  # the envelope beyond the information limit: at least this fraction of the last measured amplitude
SIGNIFICANCE = 3.0  # a shell holds measurable signal where the cross-power exceeds this many standard errors


def half_set_accumulators(
    ds: TiltSeriesDataset,
    voltage: float,
    dose_filter: bool = True,
    max_particles: int = MAX_PARTICLES,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(numerator Σ c·Y, weight Σ c²) accumulators ((D+1)³ float64, index D/2 = zero frequency, [x, y, z] voxels from
    :func:`insert_slices`) for two random halves of at most ``max_particles`` particles of ``ds``, each particle with
    the dataset's number of tilts drawn at random (a view: the training's own tilt draws are not disturbed).
    ``voltage`` kV for the exposure filter."""
    d = ds.box_size
    lattice = Lattice(d)
    keep = torch.from_numpy(np.flatnonzero(lattice.radius_px <= d / 2))
    full_freqs = torch.from_numpy(lattice.freqs2d(ds.pixel_size)).to(torch.float64)  # ((D+1)², 2) Å⁻¹
    freqs = full_freqs[keep]  # (P, 2)
    coords = torch.from_numpy(lattice.coords[keep.numpy()].astype(np.float64))  # (P, 3) cycles/px
    radius = torch.linalg.vector_norm(freqs, dim=-1).numpy()  # Å⁻¹
    rng = np.random.default_rng([seed, 0x656E76])
    chosen = rng.permutation(ds.n_particles)[: min(max_particles, ds.n_particles)]
    halves = (np.sort(chosen[0::2]), np.sort(chosen[1::2]))
    view = ds.with_tilts(ds.n_tilts, sequential=False)
    out = []
    for half in halves:
        num, wsum = zero_accumulators(d)
        loader = DataLoader(view, batch_size=batch_size, sampler=half.tolist(), collate_fn=collate)
        for batch in loader:
            n = batch["images"].shape[0] * batch["images"].shape[1]
            images = batch["images"].reshape(n, d + 1, d + 1).to(torch.float64)
            shift = batch["shift"].reshape(n, 2).to(torch.float64)
            y = center_hartley_images(images, full_freqs, shift).reshape(n, -1)[:, keep]
            c = image_ctf(freqs[None], batch["ctf"].reshape(n, -1).to(torch.float64))[1]
            if dose_filter:
                c = c * torch.from_numpy(dose_weights(batch["dose"].reshape(n).numpy(), radius, voltage))
            positions = slice_coords(coords, batch["rotation"].reshape(n, 3, 3).to(torch.float64)) * d
            insert_slices(num, wsum, positions, c * y, c * c, insertion="nearest")
        out.append((num, wsum))
    return out[0], out[1]


def shell_cross_power(
    half1: tuple[torch.Tensor, torch.Tensor], half2: tuple[torch.Tensor, torch.Tensor], min_weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of V₁·V₂ (V = numerator / weight) over each shell r = 0 … D/2 px (rounded radius) and its standard error,
    over the voxels both halves weigh ≥ ``min_weight`` (one image's full weight). Shells with no such voxel: 0, inf."""
    (n1, w1), (n2, w2) = half1, half2
    shell = torch.from_numpy(np.rint(radial_distance(n1.shape[0])).astype(np.int64)).reshape(-1)
    ok = ((w1 >= min_weight) & (w2 >= min_weight)).reshape(-1)
    prod = (n1 / w1.clamp_min(min_weight) * (n2 / w2.clamp_min(min_weight))).reshape(-1)
    n_shells = (n1.shape[0] - 1) // 2 + 1
    power, error = np.zeros(n_shells), np.full(n_shells, np.inf)
    for s in range(n_shells):
        v = prod[ok & (shell == s)]
        if v.numel():
            power[s] = float(v.mean())
            error[s] = float(v.std() / np.sqrt(v.numel())) if v.numel() > 1 else abs(power[s])
    return power, error


def signal_profile(
    ds: TiltSeriesDataset,
    voltage: float,
    dose_filter: bool = True,
    max_particles: int = MAX_PARTICLES,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(A, measured): rms signal amplitude A(r) (D/2 + 1,) of the map's Hartley transform per shell r = 0 … D/2 px, in
    the dataset's normalised units (the decoder's output units), and whether each shell's signal is measurable
    (cross-power > :data:`SIGNIFICANCE` standard errors). See the module docstring."""
    half1, half2 = half_set_accumulators(ds, voltage, dose_filter, max_particles, seed)
    power, error = shell_cross_power(half1, half2)
    measured = power > SIGNIFICANCE * error
    return np.sqrt(np.clip(power, 0.0, None)), measured


def envelope_profile(
    amplitude: np.ndarray, measured: np.ndarray, floor_ratio: float = FLOOR_RATIO
) -> np.ndarray | None:
    """The decoder's output envelope P(r) (D/2 + 1,) from :func:`signal_profile`: the measured amplitude on shells
    with measurable signal (log-linear between them); beyond the last such shell the amplitude's decay over the last
    three measured shells continued (the expected signal, below the detection limit), but never below
    ``floor_ratio`` × the last measured amplitude, so signal that more particles than the estimate's reveal can still
    be learned there. Whatever the decoder outputs beyond the information limit is scaled down with P instead of
    summing over thousands of Fourier voxels into a spike at the box centre. DC takes the larger of its own amplitude
    and shell 1's. None when no shell beyond DC is measurable (too few or too noisy particles): keep the fixed
    envelope."""
    shells = np.flatnonzero(measured[1:]) + 1
    if not len(shells):
        return None
    r = np.arange(len(amplitude), dtype=np.float64)
    log_p = np.interp(r, shells, np.log(amplitude[shells]))  # constant outside the measured range
    last, tail = shells[-1], shells[-3:]
    slope = min(np.polyfit(tail, np.log(amplitude[tail]), 1)[0], 0.0) if len(tail) >= 2 else 0.0
    beyond = r > last
    log_p[beyond] = np.maximum(log_p[last] + slope * (r[beyond] - last), log_p[last] + np.log(floor_ratio))
    profile = np.exp(log_p)
    dc = amplitude[0]
    profile[0] = max(dc, profile[1]) if np.isfinite(dc) else profile[1]
    return profile


def set_decoder_envelope(model: TomoDRGN, ds: TiltSeriesDataset, config: TrainConfig, voltage: float) -> str:
    """Give a new model's decoder the envelope ``config.decoder_envelope`` asks for (see
    :mod:`tomodrgn.training.signal_profile`); returns a line for the training log saying what was used."""
    dec = model.decoder
    if config.decoder_envelope == "none":
        dec.envelope_gain.fill_(1.0)
        return "decoder envelope: none"
    if config.decoder_envelope == "measured":
        amplitude, measured = signal_profile(ds, voltage, config.dose_filter, seed=config.seed)
        profile = envelope_profile(amplitude, measured)
        if profile is not None:
            dec.set_envelope_profile(profile)
            last = int(np.flatnonzero(measured)[-1])
            return (
                f"decoder envelope: measured, signal to shell {last} of {ds.box_size // 2} "
                f"({ds.pixel_size * ds.box_size / last:.1f} Å); per shell: " + " ".join(f"{v:.3g}" for v in profile)
            )
        return "decoder envelope: fixed (no shell with measurable signal in the half-set back-projections)"
    return "decoder envelope: fixed"
