"""Particle poses: RELION ZYZ Euler angles ↔ rotation matrices, and in-plane shifts.

RELION convention (``Euler_angles2matrix``): angles (rot, tilt, psi) in degrees, the matrix
``A = Rz(psi)·Ry(tilt)·Rz(rot)`` of *passive* rotations, maps a point of the reference (volume) frame into the
particle-image frame: ``x_img = A @ x_ref``. A central slice of the volume at image-lattice points ``c`` (rows) is
therefore sampled at ``c @ A`` in the volume frame. The particle's z axis in the reference frame is ``A[2]``.

Shifts: ``_rlnOriginX/YAngst`` (Å). The particle image is the projection translated by the origin; the decoded
slice is phase-shifted accordingly (:func:`shift_phase`).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def euler_to_matrix(rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees, each shape (...)) → rotation matrices (..., 3, 3), float64."""
    a, b, g = (np.deg2rad(np.asarray(x, dtype=np.float64)) for x in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    m = np.empty(np.broadcast(a, b, g).shape + (3, 3))
    m[..., 0, 0] = cg * cc - sg * sa
    m[..., 0, 1] = cg * cs + sg * ca
    m[..., 0, 2] = -cg * sb
    m[..., 1, 0] = -sg * cc - cg * sa
    m[..., 1, 1] = -sg * cs + cg * ca
    m[..., 1, 2] = sg * sb
    m[..., 2, 0] = sc
    m[..., 2, 1] = ss
    m[..., 2, 2] = cb
    return m


def matrix_to_euler(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation matrices (..., 3, 3) → RELION (rot, tilt, psi) in degrees (inverse of :func:`euler_to_matrix`)."""
    m = np.asarray(m, dtype=np.float64)
    abs_sb = np.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    tilt = np.arctan2(abs_sb, m[..., 2, 2])
    regular = abs_sb > 16 * np.finfo(np.float32).eps
    rot = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 0]), 0.0)
    psi = np.where(
        regular,
        np.arctan2(m[..., 1, 2], -m[..., 0, 2]),
        np.where(
            np.sign(m[..., 2, 2]) > 0, np.arctan2(-m[..., 1, 0], m[..., 0, 0]), np.arctan2(m[..., 1, 0], -m[..., 0, 0])
        ),
    )
    return np.rad2deg(rot), np.rad2deg(tilt), np.rad2deg(psi)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices uniform on SO(3) (from uniform unit quaternions), float64 (n, 3, 3)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def tilt_about_y(tilt_deg: np.ndarray) -> np.ndarray:
    """Matrices (..., 3, 3) of a stage tilt about the image y axis by ``tilt_deg`` degrees (passive, like RELION)."""
    return euler_to_matrix(np.zeros_like(tilt_deg), tilt_deg, np.zeros_like(tilt_deg))


def slice_coords(coords: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Volume-frame positions of image-lattice points: ``coords @ rotation`` (the central-slice convention above).

    ``coords`` (P, 3) (z = 0, any unit), ``rotation`` (..., 3, 3) RELION matrices A → (..., P, 3) in the same unit.
    """
    return coords.to(rotation.dtype) @ rotation


def shift_phase(freqs: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Phase factors (cos, sin) for translating images by ``shift`` (..., 2) Å, at ``freqs`` (n, 2) Å⁻¹.

    Returns a tensor (..., n, 2) of cos/sin of φ = −2π k·s; the Hartley value h of the translated image is
    ``cos φ·h(k) − sin φ·h(−k)`` (see :func:`translate_hartley`).
    """
    phase = -2.0 * math.pi * (shift[..., None, :] * freqs).sum(-1)
    return torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1)


def translate_hartley(h: torch.Tensor, h_neg: torch.Tensor, freqs: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Hartley values of an image translated by ``shift`` (..., 2) Å, given h(k) and h(−k) at ``freqs`` (n, 2) Å⁻¹.

    F'(k) = F(k)·e^{iφ} with φ = −2π k·s; in Hartley terms h'(k) = cos φ·h(k) − sin φ·h(−k).
    """
    cs = shift_phase(freqs, shift)
    return cs[..., 0] * h - cs[..., 1] * h_neg
