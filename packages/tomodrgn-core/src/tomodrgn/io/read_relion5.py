"""RELION 5 / WarpTools 2-D stack particle sets (``_rlnTomoSubTomosAre2DStacks 1``): reading (subsets are written
by :mod:`tomodrgn.io.write_relion5`).

A set is an optimisation set (``_rlnTomoParticlesFile``, ``_rlnTomoTomogramsFile``), a particles STAR with one row
per particle (its 2-D stack ``_rlnImageName``, ``_rlnTomoVisibleFrames``, 3-D pose and origin) and a tomograms STAR
(``data_global`` + one tilt table per tomogram: projection matrices, defocus, pre-exposure). Each particle becomes
one row per visible tilt image of a :class:`~tomodrgn.io.particle_series.ParticleSeries`; the geometry is derived in
``docs/architecture.md`` ("RELION 5 / WarpTools 2-D stack sets: geometry"):

- pose A = R_f · A_sub · A_part (R_f the tilt's projection rotation, A_sub from ``_rlnTomoSubtomogramRot/Tilt/Psi``,
  A_part from ``_rlnAngleRot/Tilt/Psi``, both :func:`~tomodrgn.physics.pose.euler_to_matrix`);
- 2-D origin (Å) = first two components of R_f · A_sub · o, o = ``_rlnOriginX/Y/ZAngst``;
- defocus = the tilt's ``_rlnDefocusU/V`` + hand · slope · z-component of R_f · (centred position − A_sub · o) (Å),
  as RELION's ``Tomogram::getCtf``; dose = pre-exposure + the step to the next tilt; k-th stack image = k-th
  visible frame (a stack holding every frame of the tilt series is read at the frame indices).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.particle_series import (
    _NO_3D,
    ParticleSeries,
    StackSet,
    _check_stacks,
    _end_dose,
    _float_col,
    _pixel_size,
    _premultiplied,
    _stack_shape,
    check_image_size,
    no_ctf_columns,
    no_dose,
    resolve_stack,
    use_ctf,
)
from tomodrgn.io.star import Block, find_optics_block, find_particle_block, join_optics, read_star
from tomodrgn.io.tomograms import find_relative, global_table, projection_rotations, relion_y_tilt, tilt_table
from tomodrgn.physics.ctf import DEFAULT_VOLTAGE
from tomodrgn.physics.pose import euler_to_matrix

OPTIMISATION_KEYS = ("rlnTomoParticlesFile", "rlnTomoTomogramsFile")


def _flag_blocks(blocks: dict[str, Block]):
    for block in blocks.values():
        if isinstance(block, dict) and "rlnTomoSubTomosAre2DStacks" in block:
            yield block["rlnTomoSubTomosAre2DStacks"]
        elif isinstance(block, pd.DataFrame) and "rlnTomoSubTomosAre2DStacks" in block and len(block):
            yield block["rlnTomoSubTomosAre2DStacks"].iloc[0]


def is_optimisation_set(blocks: dict[str, Block]) -> bool:
    """Whether STAR blocks are a RELION optimisation set (a key-value block naming the particles STAR)."""
    return any(isinstance(b, dict) and "rlnTomoParticlesFile" in b for b in blocks.values())


def is_stack_set(blocks: dict[str, Block]) -> bool:
    """Whether a particles STAR is a 2-D stack set (``_rlnTomoSubTomosAre2DStacks 1`` or ``_rlnTomoVisibleFrames``)."""
    if any(str(v).strip() in ("1", "1.0", "True") for v in _flag_blocks(blocks)):
        return True
    return any(isinstance(b, pd.DataFrame) and "rlnTomoVisibleFrames" in b for b in blocks.values())


def _optimisation_entry(blocks: dict[str, Block], key: str) -> str | None:
    for b in blocks.values():
        if isinstance(b, dict) and key in b and str(b[key]).strip() not in ("", '""'):
            return str(b[key]).strip()
    return None


def _find_tomograms_star(particles_star: Path) -> Path:
    """The tomograms STAR of a particles STAR read without an optimisation set: through an optimisation set next
    to it that names it, else a ``tomograms.star`` next to it."""
    for candidate in sorted(particles_star.parent.glob("*optimisation_set*.star")):
        blocks = read_star(candidate)
        names = [_optimisation_entry(blocks, k) for k in OPTIMISATION_KEYS]
        if names[0] and names[1]:
            found = find_relative(names[0], candidate.parent)
            if found is not None and found.resolve() == particles_star.resolve():
                tomo = find_relative(names[1], candidate.parent)
                if tomo is not None:
                    return tomo
    if (particles_star.parent / "tomograms.star").is_file():
        return particles_star.parent / "tomograms.star"
    raise InputError(
        f"{particles_star}: a 2-D stack particle set needs its tomograms STAR: read the optimisation set instead, "
        "or pass tomograms_star (--tomograms-star)"
    )


def _visible(value, where: str) -> np.ndarray:
    text = str(value).strip().strip("[]")
    try:
        flags = np.array([int(float(v)) for v in text.split(",") if v.strip() != ""], dtype=np.int64)
    except ValueError:
        raise InputError(f"{where}: cannot read _rlnTomoVisibleFrames {value!r} (expected e.g. [1,1,0,1])") from None
    if len(flags) == 0 or not np.isin(flags, (0, 1)).all():
        raise InputError(f"{where}: _rlnTomoVisibleFrames {value!r} must be a list of 0/1 flags")
    return flags.astype(bool)


def _tilt_geometry(tomograms_blocks, tomograms_star: Path, tomogram: str, with_ctf: bool) -> dict[str, np.ndarray]:
    """Per-tilt rotation, defocus (0 unless ``with_ctf``), dose (NaN without ``_rlnMicrographPreExposure``), tilt and
    phase shift of one tomogram's tilt series."""
    table = tilt_table(tomograms_blocks, tomograms_star, tomogram)
    where = f"{tomograms_star}: tilt series {tomogram!r}"
    rot = projection_rotations(table, tomograms_star, tomogram)
    zero = np.zeros(len(table))
    du = _float_col(table, "rlnDefocusU", tomograms_star, f"defocus per tilt of {where}") if with_ctf else zero
    pre = _float_col(table, "rlnMicrographPreExposure", tomograms_star, "", default=np.nan)
    if "rlnTomoNominalStageTiltAngle" in table:
        tilt = _float_col(table, "rlnTomoNominalStageTiltAngle", tomograms_star, "")
    elif "rlnTomoYTilt" in table:
        tilt = _float_col(table, "rlnTomoYTilt", tomograms_star, "")
    else:
        tilt = relion_y_tilt(rot)
    return {
        "rotation": rot,
        "defocus_u": du,
        "defocus_v": _float_col(table, "rlnDefocusV", tomograms_star, "", default=du),
        "defocus_angle": _float_col(table, "rlnDefocusAngle", tomograms_star, "", default=0.0),
        "phase_shift": _float_col(table, "rlnPhaseShift", tomograms_star, "", default=0.0),
        "dose": _end_dose(pre) if np.isfinite(pre).all() else np.full(len(pre), np.nan),
        "tilt": tilt,
    }


def _per_particle(df: pd.DataFrame, glob: pd.DataFrame, tomo: np.ndarray, name: str, default, path: Path):
    """A per-particle value from the particle rows (optics joined), else the tomogram's row of ``data_global``."""
    if name in df:
        return _float_col(df, name, path, "")
    if name in glob:
        values = dict(zip(glob["rlnTomoName"].astype(str), pd.to_numeric(glob[name], errors="coerce")))
        return np.array([values.get(t, np.nan) for t in tomo], dtype=np.float64)
    if default is None:
        raise InputError(f"{path}: required column _{name} is missing from the optics block and data_global")
    return np.full(len(df), float(default))


def _euler(df: pd.DataFrame, prefix: str, path: Path) -> np.ndarray:
    cols = [f"{prefix}Rot", f"{prefix}Tilt", f"{prefix}Psi"]
    if not any(c in df for c in cols):  # RELION: identity when the angles are absent
        return np.broadcast_to(np.eye(3), (len(df), 3, 3))
    return euler_to_matrix(*[_float_col(df, c, path, "particle pose", default=0.0) for c in cols])


def _from_optimisation_set(path: Path, blocks: dict[str, Block], tomograms_star):
    """(particles STAR, its blocks, tomograms STAR, optimisation set, its blocks): the files an optimisation set
    names (relative to its folder), or ``path`` itself when it is the particles STAR."""
    if not is_optimisation_set(blocks):
        return path, blocks, tomograms_star, None, None
    optimisation_set, optimisation_blocks = path, blocks
    names = {k: _optimisation_entry(blocks, k) for k in OPTIMISATION_KEYS}
    found = find_relative(names["rlnTomoParticlesFile"] or "", path.parent)
    if found is None:
        raise InputError(f"{path}: _rlnTomoParticlesFile {names['rlnTomoParticlesFile']!r} not found")
    if tomograms_star is None:
        if names["rlnTomoTomogramsFile"] is None:
            raise InputError(f"{optimisation_set}: required entry _rlnTomoTomogramsFile is missing")
        tomograms_star = find_relative(names["rlnTomoTomogramsFile"], optimisation_set.parent)
        if tomograms_star is None:
            raise InputError(f"{optimisation_set}: _rlnTomoTomogramsFile {names['rlnTomoTomogramsFile']!r} not found")
    return found, read_star(found), tomograms_star, optimisation_set, optimisation_blocks


def _particle_names(df: pd.DataFrame, tomo: np.ndarray, path: Path) -> np.ndarray:
    names = (
        df["rlnTomoParticleName"].astype(str).to_numpy()
        if "rlnTomoParticleName" in df
        else np.array([f"{t}/{i + 1}" for i, t in enumerate(tomo)])
    )
    if len(set(names)) != len(df):
        dup = pd.Series(names)[pd.Series(names).duplicated()].iloc[0]
        raise InputError(f"{path}: particle name {dup!r} appears in more than one row (_rlnTomoParticleName)")
    return names


@dataclass
class _ParticleGeometry:
    """Per particle: A_sub, A_part (n, 3, 3), the 3-D origin (n, 3) Å, the position in the tomogram (n, 3) Å or
    None, the centre relative to the tomogram centre (n, 3) Å or None, hand and defocus slope (n,)."""

    a_sub: np.ndarray
    a_part: np.ndarray
    origin: np.ndarray
    position: np.ndarray | None
    centred: np.ndarray | None
    hand: np.ndarray
    slope: np.ndarray


def _particle_geometry(df: pd.DataFrame, glob, tomo: np.ndarray, px: float, path: Path) -> _ParticleGeometry:
    """The geometry of each particle (``docs/architecture.md``, "RELION 5 / WarpTools 2-D stack sets: geometry")."""
    if any(f"rlnOrigin{a}Angst" in df for a in "XYZ"):
        origin = np.stack([_float_col(df, f"rlnOrigin{a}Angst", path, "", default=0.0) for a in "XYZ"], -1)
    else:
        origin = np.stack([_float_col(df, f"rlnOrigin{a}", path, "", default=0.0) for a in "XYZ"], -1) * px
    ts_px = _per_particle(df, glob, tomo, "rlnTomoTiltSeriesPixelSize", px, path)
    centred = position = None
    if all(f"rlnCenteredCoordinate{a}Angst" in df for a in "XYZ"):
        centred = np.stack([_float_col(df, f"rlnCenteredCoordinate{a}Angst", path, "") for a in "XYZ"], -1)
        position = centred
    elif all(f"rlnCoordinate{a}" in df for a in "XYZ"):
        coord = np.stack([_float_col(df, f"rlnCoordinate{a}", path, "") for a in "XYZ"], -1)
        position = coord * ts_px[:, None]
        if all(f"rlnTomoSize{a}" in glob for a in "XYZ"):
            size = np.stack([_per_particle(df, glob, tomo, f"rlnTomoSize{a}", None, path) for a in "XYZ"], -1)
            centred = (coord - np.floor(size / 2)) * ts_px[:, None]
    if centred is None:
        warnings.warn(f"{path}: particle positions relative to the tomogram centre unknown: defocus not corrected "
                      "for particle depth", stacklevel=4)  # fmt: skip
    return _ParticleGeometry(
        a_sub=_euler(df, "rlnTomoSubtomogram", path),
        a_part=_euler(df, "rlnAngle", path),
        origin=origin,
        position=position,
        centred=centred,
        hand=_per_particle(df, glob, tomo, "rlnTomoHand", 1.0, path),
        slope=_per_particle(df, glob, tomo, "rlnTomoDefocusSlope", 1.0, path),
    )


def _image_rows(df, names, tomo, path: Path, ddir, tomograms_blocks, tomograms_star, with_ctf: bool):
    """One row per visible tilt image: (particle, frame in its tilt series, stack path, index in the stack) arrays,
    and each tilt series' per-frame values (defocus only ``with_ctf``); a stack holds the visible frames or every
    frame of the series."""
    tilts: dict[str, dict[str, np.ndarray]] = {}
    shapes: dict[str, tuple] = {}
    cols: dict[str, list] = {k: [] for k in ("p", "frame", "stack", "index")}
    for p in range(len(df)):
        where = f"{path}: particle {names[p]!r} (row {p})"
        if tomo[p] not in tilts:
            tilts[tomo[p]] = _tilt_geometry(tomograms_blocks, tomograms_star, tomo[p], with_ctf)
        n_frames = len(tilts[tomo[p]]["dose"])
        visible = _visible(df["rlnTomoVisibleFrames"].iloc[p], where)
        if len(visible) != n_frames:
            raise InputError(
                f"{where}: _rlnTomoVisibleFrames has {len(visible)} flags but tilt series {tomo[p]!r} has {n_frames} "
                "tilts"
            )
        frames = np.flatnonzero(visible)
        name = str(df["rlnImageName"].iloc[p]).rpartition("@")[2]
        found = resolve_stack(name, path.parent, ddir)
        if found is None:
            raise InputError(f"{where}: image stack {name} not found (looked next to {path} and its parents); "
                             "pass --datadir (the folder the image paths are relative to)")  # fmt: skip
        stack = str(found)
        if stack not in shapes:
            shapes[stack] = _stack_shape(stack)
        nz = shapes[stack][2]
        if nz == len(frames):
            index = np.arange(len(frames))
        elif nz == n_frames:  # a stack of every frame of the tilt series
            index = frames
        else:
            raise InputError(
                f"{where}: _rlnTomoVisibleFrames marks {len(frames)} visible frames but {stack} has {nz} images "
                f"(expected {len(frames)}, or all {n_frames} frames)"
            )
        cols["p"] += [p] * len(frames)
        cols["frame"] += list(frames)
        cols["stack"] += [stack] * len(frames)
        cols["index"] += list(index)
    return (
        np.asarray(cols["p"], dtype=np.int64),
        np.asarray(cols["frame"], dtype=np.int64),
        np.asarray(cols["stack"], dtype=object),
        np.asarray(cols["index"], dtype=np.int64),
        tilts,
    )


def stack_set_files(
    path: Path, blocks: dict[str, Block], tomograms_star: str | Path | None = None
) -> tuple[StackSet, dict[str, Block]]:
    """The files of a 2-D stack set read from ``path`` (optimisation set or particles STAR; ``blocks`` its blocks),
    without opening a stack: its :class:`StackSet` (one particle per row of the particle block) and the particles
    STAR's blocks. Refuses 3-D subtomograms (``_rlnTomoSubTomosAre2DStacks 0``)."""
    path, blocks, tomograms_star, optimisation_set, optimisation_blocks = _from_optimisation_set(
        path, blocks, tomograms_star
    )
    if any(str(v).strip() in ("0", "0.0", "False") for v in _flag_blocks(blocks)):
        raise InputError(f"{path}: _rlnTomoSubTomosAre2DStacks is 0: {_NO_3D}")
    tomograms_star = Path(tomograms_star).absolute() if tomograms_star is not None else _find_tomograms_star(path)
    particle_block = find_particle_block(blocks, path)
    ss = StackSet(
        particles_star=path,
        tomograms_star=tomograms_star,
        particle_block=particle_block,
        particle_rows=np.arange(len(blocks[particle_block]), dtype=np.int64),
        tomograms_blocks=read_star(tomograms_star),
        optimisation_set=optimisation_set,
        optimisation_blocks=optimisation_blocks,
    )
    return ss, blocks


def _particle_table(path: Path, blocks: dict[str, Block]) -> tuple[str, pd.DataFrame]:
    """The particle block's name and its rows (one per particle, optics group columns joined), checked for the
    columns a 2-D stack set needs; per-particle 3-D CTF volumes (``_rlnCtfImage``) are refused."""
    particle_block = find_particle_block(blocks, path)
    optics_name = find_optics_block(blocks)
    df = join_optics(blocks[particle_block].reset_index(drop=True), blocks[optics_name] if optics_name else None, path)
    for col in ("rlnTomoName", "rlnImageName", "rlnTomoVisibleFrames"):
        if col not in df:
            raise InputError(f"{path}: required column _{col} is missing (2-D stack particle set)")
    if "rlnCtfImage" in df:
        raise InputError(f"{path}: _rlnCtfImage found: {_NO_3D}")
    return particle_block, df


def _particle_optics(
    df: pd.DataFrame, glob: pd.DataFrame, tomo: np.ndarray, path: Path, with_ctf: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voltage (kV), spherical aberration (mm) and amplitude contrast per particle, from the particle rows (optics
    joined), else the tomogram's row of ``data_global``; each is required ``with_ctf``, else only the voltage is read
    (default :data:`~tomodrgn.physics.ctf.DEFAULT_VOLTAGE`) and the others are NaN (not used)."""
    voltage = _per_particle(df, glob, tomo, "rlnVoltage", None if with_ctf else DEFAULT_VOLTAGE, path)
    if not with_ctf:
        return voltage, np.full(len(df), np.nan), np.full(len(df), np.nan)
    cs = _per_particle(df, glob, tomo, "rlnSphericalAberration", None, path)
    w = _per_particle(df, glob, tomo, "rlnAmplitudeContrast", None, path)
    return voltage, cs, w


def _stack_set_ctf(path: Path, df: pd.DataFrame, glob: pd.DataFrame, tomograms_blocks, tomograms_star, tomo, ctf):
    """Whether to read the CTF of a 2-D stack set (:func:`~tomodrgn.io.particle_series.use_ctf` over the particle
    rows, ``data_global`` and the first tomogram's tilt table)."""
    columns = set(df.columns) | set(glob.columns)
    if len(tomo) and ctf != "none":
        columns |= set(tilt_table(tomograms_blocks, tomograms_star, tomo[0]).columns)
    return use_ctf(columns, path, ctf)


def _ctf_and_dose(per_image: dict, with_ctf: bool, voltage, cs, w, path: Path, dose: str) -> dict:
    """The per-image CTF and dose fields of a stack set: ``per_image`` (:func:`_image_geometry`) with voltage, Cs
    and amplitude contrast per image, or :data:`~tomodrgn.physics.ctf.NO_CTF` without a CTF; dose 0 (and
    ``has_dose`` False) when a tilt series has no pre-exposures."""
    out = {**per_image, "voltage": voltage, "cs": cs, "amplitude_contrast": w, "has_ctf": with_ctf}
    if not with_ctf:
        out.update(no_ctf_columns(voltage))
    out["has_dose"] = bool(np.isfinite(out["dose"]).all())
    if not out["has_dose"]:
        out["dose"] = no_dose(len(out["dose"]), path, dose, "_rlnMicrographPreExposure")
    return out


def _image_geometry(
    geo: _ParticleGeometry, tilts: dict[str, dict[str, np.ndarray]], tomo: np.ndarray, ip: np.ndarray, frame: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-image pose, 2-D origin and per-tilt values, keyed as :class:`ParticleSeries` fields
    (``docs/architecture.md``, "RELION 5 / WarpTools 2-D stack sets: geometry"): ``rotation`` R_f · A_sub · A_part,
    ``shift`` (n, 2) Å, ``defocus_u/v`` (Å: the tilt's defocus + the particle's depth), ``defocus_angle`` and
    ``phase_shift`` (°), ``dose`` (e⁻/Å², cumulative end of exposure) and ``tilt`` (°) of the image rows of particle
    ``ip`` at tilt-series frame ``frame``; ``tilts``: each tomogram's per-frame values (:func:`_tilt_geometry`)."""
    # per-tilt values of all tomograms in one table: row offset[tomogram] + frame
    order = list(tilts)
    offset = dict(zip(order, np.cumsum([0] + [len(tilts[t]["dose"]) for t in order])))
    table_row = np.array([offset[t] for t in tomo], dtype=np.int64)[ip] + frame

    def per_tilt(key: str) -> np.ndarray:
        return np.concatenate([tilts[t][key] for t in order])[table_row]

    r_f = per_tilt("rotation")
    rotation = r_f @ geo.a_sub[ip] @ geo.a_part[ip]
    shift = np.einsum("nij,nj->ni", r_f @ geo.a_sub[ip], geo.origin[ip])[:, :2]
    depth = np.zeros(len(ip))
    if geo.centred is not None:
        true_centre = geo.centred - np.einsum("pij,pj->pi", geo.a_sub, geo.origin)
        depth = np.einsum("nj,nj->n", r_f[:, 2], true_centre[ip]) * geo.hand[ip] * geo.slope[ip]
    return {
        "rotation": rotation,
        "shift": shift,
        "defocus_u": per_tilt("defocus_u") + depth,
        "defocus_v": per_tilt("defocus_v") + depth,
        "defocus_angle": per_tilt("defocus_angle"),
        "phase_shift": per_tilt("phase_shift"),
        "dose": per_tilt("dose"),
        "tilt": per_tilt("tilt"),
    }


def _images_table(
    names: np.ndarray,
    tomo: np.ndarray,
    ip: np.ndarray,
    frame: np.ndarray,
    stack_path: np.ndarray,
    stack_index: np.ndarray,
) -> pd.DataFrame:
    """The internal per-image table of a stack set: particle and tomogram names, ``_rlnImageName`` (1-based
    index@stack) and ``tomodrgnTiltFrame`` (0-based frame in the tilt series)."""
    return pd.DataFrame(
        {
            "rlnTomoParticleName": names[ip],
            "rlnTomoName": tomo[ip],
            "rlnImageName": [f"{i + 1}@{s}" for i, s in zip(stack_index, stack_path)],
            "tomodrgnTiltFrame": frame,
        }
    )


def read_stack_set(
    path: Path,
    blocks: dict[str, Block],
    *,
    pixel_size: float | None = None,
    datadir: str | Path | None = None,
    tomograms_star: str | Path | None = None,
    ctf: str = "auto",
    dose: str = "auto",
) -> ParticleSeries:
    """Read a 2-D stack set from its optimisation set or particles STAR (``blocks`` are ``path``'s blocks; ``ctf``
    and ``dose`` as :func:`tomodrgn.io.particles.read_particles`)."""
    ss, blocks = stack_set_files(path, blocks, tomograms_star)
    path, tomograms_star, tomograms_blocks = ss.particles_star, ss.tomograms_star, ss.tomograms_blocks
    glob = global_table(tomograms_blocks, tomograms_star)
    particle_block, df = _particle_table(path, blocks)
    premultiplied = _premultiplied(df, path)  # images × CTF at extraction: modelled as CTF² (ctf_power 2)
    n = len(df)
    tomo = df["rlnTomoName"].astype(str).to_numpy()
    names = _particle_names(df, tomo, path)
    ddir = Path(datadir).absolute() if datadir is not None else None
    first_stack = resolve_stack(str(df["rlnImageName"].iloc[0]).rpartition("@")[2], path.parent, ddir) if n else None
    px = _pixel_size(df, pixel_size, path, first_stack)
    geo = _particle_geometry(df, glob, tomo, px, path)
    with_ctf = _stack_set_ctf(path, df, glob, tomograms_blocks, tomograms_star, tomo, ctf)
    voltage, cs, w = _particle_optics(df, glob, tomo, path, with_ctf)
    ip, frame, stack_path, stack_index, tilts = _image_rows(
        df, names, tomo, path, ddir, tomograms_blocks, tomograms_star, with_ctf
    )
    box = _check_stacks(stack_path, stack_index, path, "relion5")
    check_image_size(df, box, path, px)
    per_image = _ctf_and_dose(_image_geometry(geo, tilts, tomo, ip, frame), with_ctf, voltage[ip], cs[ip], w[ip],
                              path, dose)  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(np.bincount(ip, minlength=n))])
    images = _images_table(names, tomo, ip, frame, stack_path, stack_index)
    class_label = pd.to_numeric(df["rlnClassNumber"], errors="coerce").to_numpy() if "rlnClassNumber" in df else None
    return ParticleSeries(
        star_path=ss.optimisation_set or path,
        flavour="relion5",
        blocks=blocks,
        images=images,
        pixel_size=px,
        box_size=box,
        particle_names=[str(s) for s in names],
        image_indices=[np.arange(starts[p], starts[p + 1], dtype=np.int64) for p in range(n)],
        stack_path=stack_path,
        stack_index=stack_index,
        **per_image,
        image_block=particle_block,
        position=geo.position,
        tomogram=[str(t) for t in tomo] if geo.position is not None else None,
        class_label=class_label,
        datadir=ddir,
        ctf_premultiplied=premultiplied[ip] if premultiplied is not None and with_ctf else None,
        stack_set=ss,
    )
