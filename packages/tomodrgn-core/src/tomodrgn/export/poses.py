"""``tomodrgn export_poses``: a run's refined poses (``--refine-poses``, ``poses.E.npz``) written into its training
particle STAR, in the STAR's own flavour, for RELION / Warp / M or another tomoDRGN run.

The corrections (:mod:`tomodrgn.models.pose_corrections`) of particle p (rotation vector ωₚ rad in its reference
frame, 3-D origin eₚ Å) and of its image i (2-D shift δᵢ Å) give the corrected pose and shift

    A'ᵢ = Aᵢ · exp([ωₚ]×)            s'ᵢ = sᵢ + (Aᵢ · eₚ)_xy + δᵢ

with Aᵢ (RELION matrix, ``x_img = A·x_ref``) and sᵢ (RELION origin, Å: the particle lies at −s from the box centre)
as :func:`~tomodrgn.io.particles.read_particles` reads them. Written back:

- image-row STARs (Warp/M, RELION 5 rows, nextPYP): each image row's ``_rlnAngleRot/Tilt/Psi`` = the RELION ZYZ
  angles (°) of A'ᵢ (:func:`~tomodrgn.physics.pose.matrix_to_euler`), and its origin = s'ᵢ, in the columns the
  STAR has: ``_rlnOriginX/YAngst`` (Å), else ``_rlnOriginX/Y`` (px: s'ᵢ / pixel size, the pixel size the run read
  the STAR with), else new ``_rlnOriginX/YAngst`` columns;
- RELION 5 / WarpTools 2-D stack sets, where A = R_f · A_sub · A_part and s = (R_f · A_sub · o)_xy
  (:mod:`tomodrgn.io.read_relion5`): each particle's A'_part = A_part · exp([ωₚ]×) (``_rlnAngleRot/Tilt/Psi``)
  and o' = o + A_part · eₚ (``_rlnOriginX/Y/ZAngst`` Å, or ``_rlnOriginX/Y/Z`` px); the per-image δᵢ has no column
  there and is left out (one warning).

``read_particles`` of the written STAR gives A'ᵢ and s'ᵢ. Every other block, column and row is kept; the rows of
particles outside the run's ``--first`` / ``--ind`` selection are left as they were; stack names are re-pointed for
the output's folder (:func:`~tomodrgn.io.star_paths.moved_image_names`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tomodrgn.export.selections import _check_not_input
from tomodrgn.io.errors import InputError
from tomodrgn.io.output_dir import check_output_file
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.io.selection import chosen_indices
from tomodrgn.io.star import write_star
from tomodrgn.io.star_paths import moved_image_names
from tomodrgn.io.write_relion5 import stack_subset_files, write_stack_subset
from tomodrgn.models.pose_corrections import rotation_matrices
from tomodrgn.physics.pose import euler_to_matrix, matrix_to_euler
from tomodrgn.runs import checkpoint as ck
from tomodrgn.runs.folder import RunFolder


@dataclass
class PoseTable:
    """One ``poses.E.npz`` in physical units, per particle of the run: ``rotation_rad`` (n, 3) rotation vectors,
    ``origin_A`` (n, 3) Å, per image row of the run's series ``tilt_shift_A`` (n_images, 2) Å and ``image_particle``
    (n_images,); ``particle_names`` (n,)."""

    path: Path
    rotation_rad: np.ndarray
    origin_A: np.ndarray
    tilt_shift_A: np.ndarray
    particle_names: np.ndarray
    image_particle: np.ndarray


def rotvec_matrices(omega: np.ndarray) -> np.ndarray:
    """exp([ω]×) (..., 3, 3) float64 of rotation vectors ``omega`` (..., 3) rad (the training's own
    :func:`~tomodrgn.models.pose_corrections.rotation_matrices`, in float64)."""
    return rotation_matrices(torch.from_numpy(np.asarray(omega, dtype=np.float64))).numpy()


def poses_file(run_dir: str | Path, epoch: int | None = None) -> Path:
    """``poses.E.npz`` of ``run_dir`` (``epoch`` E, 0-based; None: the last); InputError naming what is missing."""
    run = RunFolder(Path(run_dir))
    named = (re.fullmatch(r"poses\.(\d+)\.npz", p.name) for p in run.path.glob("poses.*.npz"))
    found = sorted((int(m.group(1)), run.path / m.group(0)) for m in named if m)
    if not found:
        raise InputError(f"{run.path}: no pose corrections (poses.E.npz); train with --refine-poses")
    if epoch is None:
        return found[-1][1]
    if not run.poses(epoch).is_file():
        have = ", ".join(str(e) for e, _ in found)
        raise InputError(f"--epoch {epoch}: {run.path} has no poses.{epoch}.npz (pose corrections of epochs {have})")
    return run.poses(epoch)


def read_pose_table(path: Path) -> PoseTable:
    """The corrections of ``path`` (a ``poses.E.npz``)."""
    with np.load(path) as f:
        try:
            return PoseTable(path, *(np.asarray(f[k]) for k in ("rotation_rad", "origin_A", "tilt_shift_A",
                                                                "particle_names", "image_particle")))  # fmt: skip
        except KeyError as e:
            raise InputError(f"{path}: not a pose-corrections file (no {e.args[0]})") from None


def _run_particles(run_dir: Path) -> tuple[ParticleSeries, np.ndarray]:
    """Every particle of the run's training STAR, read as the run read it, and the run's particles (0-based, in the
    order of its corrections: its ``--first`` / ``--ind`` selection)."""
    if not RunFolder(run_dir).is_run():
        raise InputError(f"{run_dir}: not a training run folder (no config.json and weights.pt)")
    state = ck.load_checkpoint(ck.find_checkpoint(run_dir))
    config, meta = dict(state["config"]), dict(state.get("dataset") or {})
    if not meta.get("star_path"):
        raise InputError(f"{run_dir} does not record its training STAR")
    series = read_particles(meta["star_path"], pixel_size=config.get("pixel_size"),
                            tomograms_star=config.get("tomograms_star"), datadir=config.get("datadir"),
                            ctf="unused", dose="unused")  # fmt: skip
    return series, chosen_indices(series.n_particles, config.get("first"), config.get("ind"))


def _image_rows(series: ParticleSeries, chosen: np.ndarray, table: PoseTable) -> np.ndarray:
    """The rows of ``series`` of the run's image rows (its selection's rows in file order, as
    :func:`~tomodrgn.io.selection.select_particles`), checked against ``table``'s particles and images."""
    rows = np.sort(np.concatenate([series.image_indices[p] for p in chosen]))
    names = [series.particle_names[p] for p in chosen]
    if (
        len(names) != len(table.particle_names)
        or len(rows) != len(table.image_particle)
        or any(str(a) != str(b) for a, b in zip(names, table.particle_names))
    ):
        raise InputError(f"{table.path}: its {len(table.particle_names)} particles / {len(table.image_particle)} "
                         f"images are not the run's ({len(names)} / {len(rows)}) in {series.star_path}")  # fmt: skip
    return rows


def corrected_poses(series: ParticleSeries, chosen: np.ndarray, table: PoseTable) -> tuple[np.ndarray, ...]:
    """(rows, A' (m, 3, 3), s' (m, 2) Å, without δ: s'' (m, 2) Å) of the run's image rows ``rows`` of ``series``
    (module docstring)."""
    rows = _image_rows(series, chosen, table)
    p = table.image_particle
    a = series.rotation[rows]
    corrected = a @ rotvec_matrices(table.rotation_rad)[p]
    moved = series.shift[rows] + np.einsum("nij,nj->ni", a, table.origin_A[p].astype(np.float64))[:, :2]
    return rows, corrected, moved + table.tilt_shift_A, moved


def _set_columns(df: pd.DataFrame, rows: np.ndarray, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """``df`` with ``values`` (column → (len(rows),)) written at positional ``rows``; other rows keep their values (a
    new column is 0 there)."""
    df = df.reset_index(drop=True).copy()
    for col, v in values.items():
        old = (
            pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64, copy=True) if col in df else np.zeros(len(df))
        )
        old[rows] = v
        df[col] = old
    return df


def _origin_columns(df: pd.DataFrame, origin_A: np.ndarray, px: float, axes: str) -> dict[str, np.ndarray]:
    """Origin columns for ``origin_A`` (m, len(axes)) Å in ``df``'s unit: ``_rlnOrigin*Angst`` (Å) when it has
    them or no origin at all, else ``_rlnOrigin*`` (px, ``px`` Å/px)."""
    if any(f"rlnOrigin{a}Angst" in df for a in axes) or not any(f"rlnOrigin{a}" in df for a in axes):
        return {f"rlnOrigin{a}Angst": origin_A[:, i] for i, a in enumerate(axes)}
    return {f"rlnOrigin{a}": origin_A[:, i] / px for i, a in enumerate(axes)}


def _write_image_rows(series: ParticleSeries, rows, rotation, shift, out_star: Path) -> Path:
    """Write the image-row STAR of ``series`` with ``rotation`` / ``shift`` (Å) at its image rows ``rows``."""
    rot, tilt, psi = matrix_to_euler(rotation)
    values = {"rlnAngleRot": rot, "rlnAngleTilt": tilt, "rlnAnglePsi": psi}
    images = series.blocks[series.image_block]
    values.update(_origin_columns(images, shift, series.pixel_size, "XY"))
    df = _set_columns(images, rows, values)
    if "rlnImageName" in df:
        df["rlnImageName"] = moved_image_names(df["rlnImageName"].astype(str), series.star_path, out_star.parent,
                                               series.datadir)  # fmt: skip
    return write_star({**series.blocks, series.image_block: df}, out_star)


def _write_stack_set(series: ParticleSeries, chosen: np.ndarray, table: PoseTable, out_star: Path) -> Path:
    """Write the 2-D stack set of ``series`` with the particles ``chosen``'s A_part and origin corrected (module
    docstring); δ is left out, with a warning."""
    ss = series.stack_set
    block = series.blocks[ss.particle_block].reset_index(drop=True)
    prow = ss.particle_rows[chosen]
    cols = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
    angles = [pd.to_numeric(block[c], errors="coerce").to_numpy(np.float64)[prow] if c in block
              else np.zeros(len(prow)) for c in cols]  # fmt: skip
    a_part = euler_to_matrix(*angles)
    axes = "XYZ"
    angst = any(f"rlnOrigin{a}Angst" in block for a in axes) or not any(f"rlnOrigin{a}" in block for a in axes)
    unit = 1.0 if angst else series.pixel_size
    origin = np.stack([pd.to_numeric(block[c], errors="coerce").to_numpy(np.float64)[prow] if c in block
                       else np.zeros(len(prow)) for c in (f"rlnOrigin{a}{'Angst' if angst else ''}" for a in axes)],
                      -1) * unit  # fmt: skip
    new_origin = origin + np.einsum("nij,nj->ni", a_part, table.origin_A.astype(np.float64))
    values = dict(zip(cols, matrix_to_euler(a_part @ rotvec_matrices(table.rotation_rad))))
    values.update(_origin_columns(block, new_origin, series.pixel_size, axes))
    blocks = {**series.blocks, ss.particle_block: _set_columns(block, prow, values)}
    delta = np.sqrt(np.mean(table.tilt_shift_A.astype(np.float64) ** 2)) if table.tilt_shift_A.size else 0.0
    if delta > 0:
        warnings.warn(f"{out_star}: a RELION 5 2-D stack set has no per-image shift column: the refined per-image "
                      f"shifts (rms {delta:.3g} Å) are left out; rotations and 3-D origins are written",
                      stacklevel=3)  # fmt: skip
    return write_stack_subset(ss, blocks, np.arange(len(ss.particle_rows)), out_star, series.datadir)


def export_poses(
    run_dir: str | Path, out_star: str | Path, epoch: int | None = None, *, overwrite: bool = False
) -> Path:
    """Write the training particle STAR of the run ``run_dir`` with the refined poses of its ``poses.E.npz``
    (``epoch`` E, 0-based; None: the last) at ``out_star``, in the STAR's own flavour (module docstring); returns
    the written file (a 2-D stack set: its optimisation set, with NAME_particles.star and NAME_tomograms.star
    beside it). InputError for a run without pose corrections, an ``out_star`` that exists (unless ``overwrite``)
    or would replace an input file."""
    run_dir = Path(run_dir)
    table = read_pose_table(poses_file(run_dir, epoch))
    out_star = Path(out_star).absolute()
    series, chosen = _run_particles(run_dir)
    ss = series.stack_set
    inputs = [series.star_path] + ([ss.particles_star, ss.tomograms_star] if ss else [])
    _check_not_input(out_star, [Path(p).absolute() for p in inputs])
    for target in [out_star] + (list(stack_subset_files(out_star)) if ss else []):
        check_output_file(target, overwrite)
    if ss is not None:
        _image_rows(series, chosen, table)
        return _write_stack_set(series, chosen, table, out_star)
    rows, rotation, shift, _ = corrected_poses(series, chosen, table)
    return _write_image_rows(series, rows, rotation, shift, out_star)
