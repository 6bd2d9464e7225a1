"""Particle poses: RELION ZYZ Euler angles ↔ rotation matrices, and in-plane shifts.

RELION convention (``Euler_angles2matrix``): angles (rot, tilt, psi) in degrees, the matrix
``A = Rz(psi)·Ry(tilt)·Rz(rot)`` of *passive* rotations, maps a point of the reference (volume) frame into the
particle-image frame: ``x_img = A @ x_ref``. A central slice of the volume at image-lattice points ``c`` (rows) is
therefore sampled at ``c @ A`` in the volume frame. The particle's z axis in the reference frame is ``A[2]``.

Shifts: ``_rlnOriginX/YAngst`` (Å; ``_rlnOriginX/Y`` in pixels in older files), RELION's definition: the
particle's centre lies at ``−origin`` from the box centre, i.e. the particle image is the centred projection
translated by ``−origin`` (RELION centres an image by translating it by ``+origin``; a recentred coordinate is
``_rlnCoordinateX − _rlnOriginXAngst / pixel size``). cryoDRGN and the published tomoDRGN apply the same convention
(their ``translate_ht(image, origin)`` multiplies the image's Fourier transform by ``exp(−2πi k·origin)`` to
centre it). In Fourier space, with ``F(k) = Σ x(p)·exp(−2πi k·p)``: ``F_image(k) = F_projection(k)·exp(+2πi k·o)``
(:func:`shift_phase`). Checked against ``scipy.ndimage.shift`` of real-space projections in the tests.
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


def shift_phase(freqs: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Phase factors (cos φ, sin φ) taking a centred projection to the particle image with RELION origin ``origin``.

    ``origin`` (..., 2) Å (``_rlnOriginX/YAngst``), ``freqs`` (n, 2) Å⁻¹ → (..., n, 2) with φ = +2π k·origin: the
    image's Fourier transform is ``F_projection(k)·e^{iφ}``, i.e. the projection translated by −origin (see the
    module docstring). The one definition of the shift sign; everything else calls this.
    """
    phase = 2.0 * math.pi * (origin[..., None, :] * freqs).sum(-1)
    return torch.stack([torch.cos(phase), torch.sin(phase)], dim=-1)


def translate_hartley(h: torch.Tensor, h_neg: torch.Tensor, freqs: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Hartley values of the particle image with RELION origin ``origin`` (..., 2) Å, from the centred projection's
    h(k) and h(−k) at ``freqs`` (n, 2) Å⁻¹.

    F'(k) = F(k)·e^{iφ} (φ from :func:`shift_phase`); in Hartley terms h'(k) = cos φ·h(k) − sin φ·h(−k).
    """
    cs = shift_phase(freqs, origin)
    return cs[..., 0] * h - cs[..., 1] * h_neg


def center_hartley_images(images: torch.Tensor, freqs: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Centre particle images: the inverse of :func:`translate_hartley` on whole symmetrised lattices.

    ``images`` (..., D+1, D+1) Hartley images on :class:`tomodrgn.physics.lattice.Lattice` (index i ↔ −k at D − i),
    ``freqs`` ((D+1)², 2) Å⁻¹ of that lattice, ``origin`` (..., 2) Å → the centred projections' Hartley images
    (F(k)·e^{−iφ}: h(k) = cos φ·h'(k) + sin φ·h'(−k)).
    """
    cs = shift_phase(freqs, origin).reshape(*images.shape, 2)
    flipped = torch.flip(images, dims=(-2, -1))
    return cs[..., 0] * images + cs[..., 1] * flipped
