"""Centred Hartley transforms (2-D images, 3-D volumes).

Convention: the centred FFT is ``fftshift(fftn(ifftshift(x)))`` (DC at index D//2); the Hartley transform is
``real(F) - imag(F)``. The Hartley transform is its own inverse up to a factor ``1/N`` (N = number of voxels).
Functions accept numpy arrays or torch tensors and return the same kind; transforms act on the last 2 (or 3) axes.
"""

from __future__ import annotations

import numpy as np
import torch

from tomodrgn.io.errors import InputError

Array = np.ndarray | torch.Tensor


def _fftn_centered(x: Array, ndim: int) -> Array:
    axes = tuple(range(-ndim, 0))
    if isinstance(x, torch.Tensor):
        f = torch.fft.fftn(torch.fft.ifftshift(x, dim=axes), dim=axes)
        return torch.fft.fftshift(f, dim=axes)
    f = np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes)
    return np.fft.fftshift(f, axes=axes)


def _ht(x: Array, ndim: int) -> Array:
    f = _fftn_centered(x, ndim)
    return f.real - f.imag


def ht2_center(img: Array) -> Array:
    """Centred 2-D Hartley transform of the last two axes (DC at index D//2)."""
    return _ht(img, 2)


def iht2_center(ht: Array) -> Array:
    """Inverse of :func:`ht2_center`."""
    n = ht.shape[-1] * ht.shape[-2]
    return _ht(ht, 2) / n


def ht3_center(vol: Array) -> Array:
    """Centred 3-D Hartley transform of the last three axes."""
    return _ht(vol, 3)


def iht3_center(ht: Array) -> Array:
    """Inverse of :func:`ht3_center`."""
    n = ht.shape[-1] * ht.shape[-2] * ht.shape[-3]
    return _ht(ht, 3) / n


def symmetrize_ht(ht: Array) -> Array:
    """Pad a centred D×D Hartley image to (D+1)×(D+1) by repeating the first row/column at the end.

    The padded image lines up with the lattice ``linspace(-0.5, 0.5, D+1)`` (see :mod:`tomodrgn.physics.lattice`):
    frequency −0.5 (index 0) and +0.5 (index D) are the same Nyquist component.
    """
    if isinstance(ht, torch.Tensor):
        out = torch.cat([ht, ht[..., :1, :]], dim=-2)
        return torch.cat([out, out[..., :, :1]], dim=-1)
    out = np.concatenate([ht, ht[..., :1, :]], axis=-2)
    return np.concatenate([out, out[..., :, :1]], axis=-1)


def fourier_crop(img: Array, d_new: int, ndim: int = 2) -> Array:
    """Downsample real-space images (last two axes, D×D; ``ndim`` 3: volumes, last three axes) to d_new per axis by
    cropping their centred spectrum.

    Preserves the pixel-value scale (mean intensity); the pixel size grows by D/d_new.
    """
    d = img.shape[-1]
    if d_new == d:
        return img
    if d_new > d or d_new % 2:
        raise InputError(f"Fourier crop needs an even size ≤ {d}, got {d_new}")
    f = _fftn_centered(img, ndim)
    start = d // 2 - d_new // 2
    f = f[(..., *[slice(start, start + d_new)] * ndim)]
    axes = tuple(range(-ndim, 0))
    if isinstance(f, torch.Tensor):
        out = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f, dim=axes), dim=axes), dim=axes).real
    else:
        out = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(f, axes=axes), axes=axes), axes=axes).real
    return out * (d_new / d) ** ndim
