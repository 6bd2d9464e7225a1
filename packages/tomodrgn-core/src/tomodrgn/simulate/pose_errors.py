"""Upstream pose errors of a simulated dataset: the images are made with the true poses, the particle STARs carry
perturbed ones (``simulate_dataset(pose_error_deg=X, pose_error_px=Y, tilt_shift_error_px=Z)``), as poses refined
by subtomogram averaging would be. ``truth.npz`` keeps both (keys in :mod:`tomodrgn.simulate.dataset`).

Error model (X in degrees, Y and Z in pixels of the images, errors in Å and rotation matrices), in the one pose
convention of :mod:`tomodrgn.physics.pose` (RELION matrices A, a reference point r appears in the image at A·r):

- rotation, one per particle: ΔR = exp([ω]×), the rotation by |ω| about the axis ω/|ω| (Rodrigues), with
  ω ~ N(0, (X/√3)² I₃) (radians): a uniformly random axis and an angle |ω| whose rms is X (Maxwell distributed with
  scale X/√3: median ≈ 0.888·X, mean ≈ 0.921·X; X = 7.5 gives the median 6.7° of realistic STA errors). The written
  particle pose is **A' = ΔR · A**: ΔR acts in the particle's subtomogram frame (the tomogram's axes, the frame of
  the 3-D origin below), after the particle pose and before the stage tilt, so tilt f's pose is
  T_f · ΔR · A (T_f = ``tilt_about_y(θ_f)``) and every image of the particle is off by the same angle |ω|. (The axis
  being uniform, A·ΔR would have the same distribution.)
- 3-D origin, one per particle: e ~ N(0, (Y·pixel size)²) Å per axis, in the same frame: the written RELION 3-D
  origin is o + e (``_rlnOriginX/Y/ZAngst`` of a RELION 5 set, whose reader puts its estimated centre at −e from
  the true one; its depth-corrected defocus changes by the same few Å), and the 2-D origin of tilt f in the Warp/M
  rows changes by (T_f · e)_xy, the reader's projection of a 3-D origin (``docs/architecture.md``, (b)). The
  extraction points (``_rlnCoordinateX/Y/Z``, ``_rlnCenteredCoordinateX/Y/ZAngst``) are where the boxes were cut
  and stay as they are.
- 2-D shift, one per tilt image: δ ~ N(0, (Z·pixel size)²) Å per axis, added to the Warp/M row's
  ``_rlnOriginX/YAngst``. A RELION 5 / WarpTools 2-D stack set has no per-image shift (its per-tilt
  ``_rlnTomoX/YShiftAngst`` belong to the whole tilt series), so there δ is not written
  (:func:`warn_relion5_tilt_shifts`).

The errors come from their own random stream of the seed (:func:`tomodrgn.simulate.truth.seed_streams`), ω, e
and δ always drawn in that order (standard normals scaled by X, Y, Z), so images, every other ground-truth draw
and each error's directions are the same whatever the other scales; a scale of 0 leaves its columns exactly as
without errors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from tomodrgn.physics.pose import tilt_about_y
from tomodrgn.simulate.geometry import tilt_rotations
from tomodrgn.simulate.truth import POSE_ERROR_STREAM, SimulationSpec, Truth, seed_streams


@dataclass(frozen=True)
class PoseErrors:
    """The errors drawn (module docstring): ``rotation`` (n, 3, 3) ΔR, ``angle_deg`` (n,) its angle (°),
    ``origin`` (n, 3) Å the 3-D origin error e, ``tilt_shift`` (n, T, 2) Å the per-image 2-D error δ (T: every tilt of
    the scheme, kept or not)."""

    rotation: np.ndarray
    angle_deg: np.ndarray
    origin: np.ndarray
    tilt_shift: np.ndarray


@dataclass(frozen=True)
class StarPoses:
    """The poses written to the STARs: particle poses ``rotation`` (n, 3, 3) and each tilt's ``tilt_rotation``
    (n, T, 3, 3) (RELION matrices), 3-D ``origins`` (n, 3) Å and the images' 2-D ``shifts`` (n, T, 2) Å (Warp/M
    rows). Without errors these are the truth's own arrays."""

    rotation: np.ndarray
    tilt_rotation: np.ndarray
    origins: np.ndarray
    shifts: np.ndarray


def rotation_from_vector(omega: np.ndarray) -> np.ndarray:
    """exp([ω]×) (..., 3, 3): the rotation by |ω| radians about ω/|ω| (scipy's rotation vector; identity at ω = 0).

    ``omega`` (..., 3) radians. The matrix is used only as ΔR in A' = ΔR · A (module docstring)."""
    omega = np.asarray(omega, dtype=np.float64)
    return Rotation.from_rotvec(omega.reshape(-1, 3)).as_matrix().reshape(*omega.shape[:-1], 3, 3)


def rotation_angle_deg(rotation: np.ndarray) -> np.ndarray:
    """Angle (°) of rotation matrices (..., 3, 3): arccos((trace − 1) / 2), in [0, 180]."""
    trace = np.trace(np.asarray(rotation, dtype=np.float64), axis1=-2, axis2=-1)
    return np.rad2deg(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def draw_pose_errors(spec: SimulationSpec, truth: Truth) -> PoseErrors:
    """The errors of ``spec`` (resolved: ``pose_error_deg`` °, ``pose_error_px`` and ``tilt_shift_error_px`` px)
    for the particles and tilt scheme of ``truth``, from the seed's pose-error stream (module docstring)."""
    rng = seed_streams(spec.seed, POSE_ERROR_STREAM + 1)[POSE_ERROR_STREAM]
    n, t = truth.keep.shape
    omega = rng.standard_normal((n, 3)) * (math.radians(spec.pose_error_deg) / math.sqrt(3.0))
    origin = rng.standard_normal((n, 3)) * (spec.pose_error_px * spec.pixel_size)
    tilt_shift = rng.standard_normal((n, t, 2)) * (spec.tilt_shift_error_px * spec.pixel_size)
    rotation = rotation_from_vector(omega)
    return PoseErrors(rotation, rotation_angle_deg(rotation), origin, tilt_shift)


def star_poses(spec: SimulationSpec, truth: Truth, errors: PoseErrors) -> StarPoses:
    """The poses the STARs hold: the truth's with ``errors`` applied (module docstring); a scale of 0 leaves the
    corresponding arrays as the truth's own (the files are then byte for byte those without errors)."""
    rotation, tilt_rotation = truth.rotation, truth.tilt_rotation
    origins, shifts = truth.origins, truth.shifts
    if spec.pose_error_deg > 0:
        rotation = errors.rotation @ truth.rotation
        tilt_rotation = tilt_rotations(rotation, truth.angles)
    if spec.pose_error_px > 0:
        origins = origins + errors.origin
        shifts = shifts + np.einsum("tij,nj->nti", tilt_about_y(truth.angles), errors.origin)[..., :2]
    if spec.tilt_shift_error_px > 0:
        shifts = shifts + errors.tilt_shift
    return StarPoses(rotation, tilt_rotation, origins, shifts)


def warn_relion5_tilt_shifts(spec: SimulationSpec) -> None:
    """Warn (once per data set) that a RELION 5 set cannot hold the per-tilt 2-D shift errors."""
    if spec.format == "relion5" and spec.tilt_shift_error_px > 0:
        warnings.warn(
            f"tilt_shift_error_px={spec.tilt_shift_error_px:g}: a RELION 5 / WarpTools 2-D stack set has no per-image "
            "shift, so the per-tilt shift errors are written to the Warp/M particles.star only (optimisation_set.star "
            "carries the rotation and 3-D origin errors)",
            stacklevel=3,
        )
