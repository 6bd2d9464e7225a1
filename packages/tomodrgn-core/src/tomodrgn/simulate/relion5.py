"""A simulated dataset written as a RELION 5 / WarpTools 2-D stack particle set (``format="relion5"``).

Files under the dataset folder (paths in them relative to it, RELION's project folder):
- ``optimisation_set.star``: ``_rlnTomoParticlesFile`` / ``_rlnTomoTomogramsFile``;
- ``relion5_particles.star``: ``data_general`` (``_rlnTomoSubTomosAre2DStacks 1``), optics, one row per particle
  (``_rlnCenteredCoordinateX/Y/ZAngst`` = extraction point, Euler angles of the particle pose, 3-D origin,
  ``_rlnTomoVisibleFrames``, ``_rlnImageName`` = the particle's stack ``particles/<name>.mrcs``, the same stacks as
  the Warp-style ``particles.star``: kept tilts in acquisition order = visible frames in tilt-table order);
- ``tomograms.star``: ``data_global`` + ``data_<tomogram>`` per tilt series (acquisition order): projection
  matrices ``_rlnTomoProjX/Y/Z/W`` and the equivalent ``_rlnTomoXTilt/YTilt/ZRot``, defocus, pre-exposure.

Geometry (``docs/architecture.md``, "RELION 5 / WarpTools 2-D stack sets: geometry"): the simulator's tilt pose
``tilt_about_y(θ)`` is RELION's right-handed specimen rotation Ry(−θ), so ``_rlnTomoYTilt`` =
``_rlnTomoNominalStageTiltAngle`` = −θ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.star import write_star
from tomodrgn.physics.pose import matrix_to_euler, tilt_about_y

HAND = -1.0  # _rlnTomoHand written (RELION's usual value); the simulated defocus uses the same sign


def tomogram_centre(shape_zyx) -> np.ndarray:
    """RELION's tomogram centre (x, y, z) px: ``int(size / 2)`` per axis (``Tomogram::setProjectionMatrix``)."""
    return np.floor(np.asarray(shape_zyx[::-1], dtype=np.float64) / 2)


def projection_matrices(tilt_deg: np.ndarray, shape_zyx) -> np.ndarray:
    """4×4 projection matrices (T, 4, 4), tomogram px → tilt-image px: S(image centre)·R·S(−tomogram centre) with
    R = tilt_about_y(θ); the tilt images are taken to be the tomogram's X × Y in size."""
    rot = tilt_about_y(np.asarray(tilt_deg, dtype=np.float64))
    centre = tomogram_centre(shape_zyx)
    image_centre = np.array([centre[0], centre[1], 0.0])
    out = np.zeros((len(rot), 4, 4))
    out[:, :3, :3] = rot
    out[:, :3, 3] = image_centre - rot @ centre
    out[:, 3, 3] = 1.0
    return out


def _vectors(rows: np.ndarray) -> list[str]:
    return ["[" + ",".join(f"{v:.13g}" for v in r) + "]" for r in rows]


def _global_table(
    tomogram_names: list[str],
    n_tilts: int,
    tomogram_shape: tuple[int, int, int],
    pixel_size: float,
    voltage: float,
    cs: float,
    amplitude_contrast: float,
) -> pd.DataFrame:
    """``data_global`` of ``tomograms.star``: one row per tomogram (optics, hand, pixel size Å, size X/Y/Z px from
    ``tomogram_shape`` (Z, Y, X), frame count)."""
    z, y, x = tomogram_shape
    return pd.DataFrame(
        {
            "rlnTomoName": tomogram_names,
            "rlnVoltage": float(voltage),
            "rlnSphericalAberration": float(cs),
            "rlnAmplitudeContrast": float(amplitude_contrast),
            "rlnMicrographOriginalPixelSize": float(pixel_size),
            "rlnTomoHand": HAND,
            "rlnOpticsGroupName": "opticsGroup1",
            "rlnTomoTiltSeriesPixelSize": float(pixel_size),
            "rlnTomoSizeX": int(x),
            "rlnTomoSizeY": int(y),
            "rlnTomoSizeZ": int(z),
            "rlnTomoFrameCount": n_tilts,
        }
    )


def _tilt_table(
    proj: np.ndarray, tilt_deg: np.ndarray, pre: np.ndarray, defocus: np.ndarray, phase_shift: float
) -> pd.DataFrame:
    """``data_<tomogram>`` of ``tomograms.star``: one row per tilt in acquisition order: projection matrix rows
    ``proj`` (T, 4, 4), stage tilt −θ (°), defocus U, V (Å) and angle (°) ``defocus`` (T, 3), phase shift (°) and
    pre-exposure ``pre`` (e⁻/Å², dose at the start of the tilt)."""
    t = len(tilt_deg)
    table = {f"rlnTomoProj{a}": _vectors(proj[:, k]) for k, a in enumerate("XYZW")}
    table.update(
        {
            "rlnTomoNominalStageTiltAngle": -tilt_deg,
            "rlnTomoXTilt": np.zeros(t),
            "rlnTomoYTilt": -tilt_deg,
            "rlnTomoZRot": np.zeros(t),
            "rlnTomoXShiftAngst": np.zeros(t),
            "rlnTomoYShiftAngst": np.zeros(t),
            "rlnDefocusU": defocus[:, 0],
            "rlnDefocusV": defocus[:, 1],
            "rlnDefocusAngle": defocus[:, 2],
            "rlnPhaseShift": np.full(t, float(phase_shift)),
            "rlnCtfScalefactor": np.cos(np.deg2rad(tilt_deg)),
            "rlnMicrographPreExposure": pre,
        }
    )
    return pd.DataFrame(table)


def _tomograms_blocks(
    tomogram_names: list[str],
    tilt_deg: np.ndarray,
    dose: np.ndarray,
    tilt_defocus: np.ndarray,
    tomogram_shape: tuple[int, int, int],
    pixel_size: float,
    voltage: float,
    cs: float,
    amplitude_contrast: float,
    phase_shift: float,
) -> dict[str, pd.DataFrame]:
    """The blocks of ``tomograms.star``: ``data_global``, then one tilt table per tomogram, all with the tilt
    scheme ``tilt_deg`` (°) and pre-exposures (e⁻/Å²) from the cumulative end doses ``dose``; ``tilt_defocus``
    (n_tomograms, T, 3): defocus U, V (Å) and angle (°)."""
    proj = projection_matrices(tilt_deg, tomogram_shape)
    step = np.diff(np.concatenate([[0.0], dose]))
    pre = dose - step  # dose at the start of each tilt
    blocks: dict[str, pd.DataFrame] = {}
    blocks["global"] = _global_table(
        tomogram_names, len(tilt_deg), tomogram_shape, pixel_size, voltage, cs, amplitude_contrast
    )
    for g, name in enumerate(tomogram_names):
        blocks[name] = _tilt_table(proj, tilt_deg, pre, tilt_defocus[g], phase_shift)
    return blocks


def _local_numbers(tomogram_of: np.ndarray, n_tomograms: int, n_particles: int) -> np.ndarray:
    """1-based number of each particle within its tomogram (in particle order), as in ``<tomogram>/<number>``."""
    local = np.empty(n_particles, dtype=np.int64)
    for g in range(n_tomograms):
        members = np.flatnonzero(tomogram_of == g)
        local[members] = np.arange(1, len(members) + 1)
    return local


def _particles_table(
    particle_names: list[str],
    tomogram_names: list[str],
    tomogram_of: np.ndarray,
    centred: np.ndarray,
    origin: np.ndarray,
    rotation: np.ndarray,
    keep: np.ndarray,
    stack_names: list[str],
) -> pd.DataFrame:
    """The particle rows of ``relion5_particles.star``: one per particle, with its position relative to the
    tomogram centre ``centred`` (n, 3) Å, pose Euler angles (°), 3-D ``origin`` (n, 3) Å, 2-D stack and visible
    frames (``keep`` (n, T) bool as ``[1,0,…]``), and alternating random subsets 1, 2."""
    rot, tilt, psi = matrix_to_euler(rotation)
    local = _local_numbers(tomogram_of, len(tomogram_names), len(particle_names))
    return pd.DataFrame(
        {
            "rlnTomoName": [tomogram_names[g] for g in tomogram_of],
            "rlnTomoParticleName": [f"{tomogram_names[g]}/{k}" for g, k in zip(tomogram_of, local)],
            "rlnCenteredCoordinateXAngst": centred[:, 0],
            "rlnCenteredCoordinateYAngst": centred[:, 1],
            "rlnCenteredCoordinateZAngst": centred[:, 2],
            "rlnAngleRot": rot,
            "rlnAngleTilt": tilt,
            "rlnAnglePsi": psi,
            "rlnOriginXAngst": origin[:, 0],
            "rlnOriginYAngst": origin[:, 1],
            "rlnOriginZAngst": origin[:, 2],
            "rlnOpticsGroup": 1,
            "rlnImageName": stack_names,
            "rlnTomoVisibleFrames": ["[" + ",".join(str(int(v)) for v in row) + "]" for row in keep],
            "rlnRandomSubset": np.arange(len(particle_names)) % 2 + 1,
        }
    )


def _optics_table(
    pixel_size: float, box_size: int, voltage: float, cs: float, amplitude_contrast: float
) -> pd.DataFrame:
    """The single optics group of ``relion5_particles.star``: 2-D stacks of ``box_size`` px at ``pixel_size`` Å/px
    (binning 1), not CTF-premultiplied; voltage kV, Cs mm."""
    return pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnSphericalAberration": [float(cs)],
            "rlnVoltage": [float(voltage)],
            "rlnAmplitudeContrast": [float(amplitude_contrast)],
            "rlnTomoTiltSeriesPixelSize": [float(pixel_size)],
            "rlnCtfDataAreCtfPremultiplied": [0],
            "rlnImageDimensionality": [2],
            "rlnTomoSubtomogramBinning": [1.0],
            "rlnImagePixelSize": [float(pixel_size)],
            "rlnImageSize": [int(box_size)],
        }
    )


def write_relion5(
    outdir: Path,
    *,
    particle_names: list[str],
    tomogram_names: list[str],
    tomogram_of: np.ndarray,
    extraction_px: np.ndarray,
    origin: np.ndarray,
    rotation: np.ndarray,
    tilt_deg: np.ndarray,
    dose: np.ndarray,
    keep: np.ndarray,
    tilt_defocus: np.ndarray,
    pixel_size: float,
    box_size: int,
    tomogram_shape: tuple[int, int, int],
    voltage: float,
    cs: float,
    amplitude_contrast: float,
    stack_names: list[str],
    phase_shift: float = 0.0,
) -> Path:
    """Write the 2-D stack set of a simulated dataset; returns the optimisation set's path.

    ``extraction_px`` (n, 3) (x, y, z) px: box centres in the tomogram (true centre + origin / pixel size);
    ``origin`` (n, 3) Å: RELION 3-D origins; ``rotation`` (n, 3, 3): particle poses (RELION matrices, 0° frame);
    ``tilt_deg``, ``dose`` (T,): tilt angles and cumulative end doses in acquisition order; ``keep`` (n, T) bool:
    visible frames; ``tilt_defocus`` (n_tomograms, T, 3): defocus U, V (Å) and angle (°) at the tomogram centre.
    """
    outdir = Path(outdir)
    tomograms = _tomograms_blocks(
        tomogram_names, tilt_deg, dose, tilt_defocus, tomogram_shape, pixel_size, voltage, cs, amplitude_contrast,
        phase_shift,
    )  # fmt: skip
    write_star(tomograms, outdir / "tomograms.star")

    centred = (extraction_px - tomogram_centre(tomogram_shape)) * pixel_size
    particles = _particles_table(
        particle_names, tomogram_names, tomogram_of, centred, origin, rotation, keep, stack_names
    )
    optics = _optics_table(pixel_size, box_size, voltage, cs, amplitude_contrast)
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    write_star({"general": general, "optics": optics, "particles": particles}, outdir / "relion5_particles.star")
    entries = {"rlnTomoParticlesFile": "relion5_particles.star", "rlnTomoTomogramsFile": "tomograms.star"}
    return write_star({"": entries}, outdir / "optimisation_set.star")
