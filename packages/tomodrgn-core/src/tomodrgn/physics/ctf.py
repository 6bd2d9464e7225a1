"""Contrast transfer function, RELION conventions.

Defocus U/V in Å (positive = underfocus), astigmatism angle in degrees (from the x axis), voltage in kV,
spherical aberration Cs in mm, amplitude contrast w (fraction), phase shift in degrees, optional B-factor (Å²).
Frequencies in Å⁻¹. ``ctf = sqrt(1−w²)·sin γ + w·cos γ`` with ``γ = π·λ·Δf·k² − π/2·Cs·λ³·k⁴ + φ``: RELION's
``getCTF`` (``−sin(K1·Δf'·k² + K2·k⁴ − φ − atan(w/√(1−w²)))`` with Δf' = −Δf), positive (+w) at k = 0, as for
contrast-inverted (white-particle) images. Checked against teamtomo's torch-ctf in the tests.

"No CTF" (data without CTF columns, or ``--no-ctf`` / ``--ctf none``: simulations, data CTF-corrected upstream) is
the parameter set :data:`NO_CTF`, under which this CTF is 1 at every frequency: the forward model, the phase flip
(sign 1) and the Wiener filter then need no case of their own (``docs/architecture.md``, "Conventions").
"""

from __future__ import annotations

import math

import torch

#: voltage (kV) taken where a file gives none (it also scales the exposure filter's critical exposure)
DEFAULT_VOLTAGE = 300.0

#: CTF parameters (by :class:`~tomodrgn.io.particle_series.ParticleSeries` field) under which :func:`compute_ctf` is 1
#: at every frequency, for any voltage: defocus, Cs and phase shift 0 give γ = 0, amplitude contrast 1 gives
#: √(1 − 1²)·sin 0 + 1·cos 0 = 1 (exactly, also in float32)
NO_CTF = {
    "defocus_u": 0.0,
    "defocus_v": 0.0,
    "defocus_angle": 0.0,
    "cs": 0.0,
    "amplitude_contrast": 1.0,
    "phase_shift": 0.0,
}


def electron_wavelength(voltage_kv: float | torch.Tensor) -> float | torch.Tensor:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    if isinstance(v, torch.Tensor):
        return 12.2642598 / torch.sqrt(v + 0.97848e-6 * v * v)
    return 12.2642598 / math.sqrt(v + 0.97848e-6 * v * v)


def compute_ctf(
    freqs: torch.Tensor,
    defocus_u: torch.Tensor,
    defocus_v: torch.Tensor,
    defocus_angle: torch.Tensor,
    voltage: torch.Tensor,
    cs: torch.Tensor,
    amplitude_contrast: torch.Tensor,
    phase_shift: torch.Tensor | None = None,
    bfactor: torch.Tensor | None = None,
) -> torch.Tensor:
    """CTF at ``freqs`` (..., n, 2) Å⁻¹ for parameters broadcastable to ``freqs[..., 0]``'s leading shape + (1,).

    Each parameter has shape (...,) (one value per image); the result has shape (..., n).
    """

    def col(p: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(p, dtype=freqs.dtype, device=freqs.device)[..., None]

    kx, ky = freqs[..., 0], freqs[..., 1]
    k2 = kx * kx + ky * ky
    angle = torch.atan2(ky, kx)
    lam = electron_wavelength(col(voltage))
    du, dv, ang = col(defocus_u), col(defocus_v), torch.deg2rad(col(defocus_angle))
    defocus = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2.0 * (angle - ang))
    cs_a = col(cs) * 1e7
    gamma = math.pi * lam * defocus * k2 - 0.5 * math.pi * cs_a * lam**3 * k2 * k2
    if phase_shift is not None:
        gamma = gamma + torch.deg2rad(col(phase_shift))
    w = col(amplitude_contrast)
    ctf = torch.sqrt(1.0 - w * w) * torch.sin(gamma) + w * torch.cos(gamma)
    if bfactor is not None:
        ctf = ctf * torch.exp(-col(bfactor) / 4.0 * k2)
    return ctf


def premultiplied(params: torch.Tensor) -> torch.Tensor:
    """Which images are CTF-premultiplied, bool (...,): ``params`` (..., 8) has the CTF's power last (2: the image
    was multiplied by its CTF at extraction, RELION 5 / WarpTools ``_rlnCtfDataAreCtfPremultiplied 1``); (..., 7):
    none is."""
    if params.shape[-1] < 8:
        return torch.zeros(params.shape[:-1], dtype=torch.bool, device=params.device)
    return params[..., 7] > 1.5


def image_ctf(freqs: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, t): the CTF c and the transfer function t of images at ``freqs`` (..., n, 2) Å⁻¹, each (..., n).

    ``params`` (..., 7 | 8) as :func:`compute_ctf`'s arguments in order, then the CTF's power (see
    :func:`premultiplied`): t = c, or c² for CTF-premultiplied images (image = c × (c × projection)).
    """
    c = compute_ctf(freqs, *(params[..., i] for i in range(7)))
    return c, torch.where(premultiplied(params)[..., None], c * c, c)


def flip_sign(c: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """The phase flip of images with CTF c (..., n) and ``params`` (..., 7 | 8) (see :func:`image_ctf`): sign(c),
    or 1 for CTF-premultiplied images (their transfer function c² is never negative)."""
    s = torch.sign(c)
    return torch.where(premultiplied(params)[..., None], torch.ones_like(s), s)
