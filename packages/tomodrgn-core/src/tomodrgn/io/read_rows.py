"""Particle STARs with one row per tilt image: Warp/M image series, nextPYP exports, RELION 5 per-image rows.

The flavour is told from the particle block's columns (:func:`detect_flavour`); tilt images are grouped into
particles by ``_rlnGroupName`` (Warp/M), ``_rlnTomoParticleName`` (RELION) or ``_rlnGroupNumber`` (nextPYP).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.particle_series import (
    _NO_3D,
    ParticleSeries,
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
    voltage_or_default,
)
from tomodrgn.io.star import Block, join_optics, require_columns, split_image_name
from tomodrgn.io.tomograms import read_tilt_series_star
from tomodrgn.physics.pose import euler_to_matrix


def detect_flavour(df: pd.DataFrame, path: Path) -> str:
    """Guess the STAR flavour of a particle block from its columns."""
    if "rlnTiltIndex" in df and "rlnTomoParticleName" not in df:
        return "nextpyp"
    if "rlnTomoParticleName" in df or "rlnTomoName" in df:
        return "relion5"
    if "rlnGroupName" in df:
        return "warp"
    raise InputError(
        f"{path}: cannot tell the STAR flavour: expected _rlnGroupName (Warp/M), _rlnTomoParticleName (RELION 5) "
        "or _rlnTiltIndex (nextPYP) in the particle block"
    )


def _group_keys(df: pd.DataFrame, flavour: str, path: Path) -> np.ndarray:
    if flavour == "warp":
        require_columns(df, ["rlnGroupName"], path, "Warp/M groups tilt images into particles by it")
        return df["rlnGroupName"].astype(str).to_numpy()
    if flavour == "relion5":
        require_columns(df, ["rlnTomoParticleName"], path, "RELION 5 groups tilt images into particles by it")
        return df["rlnTomoParticleName"].astype(str).to_numpy()
    for name in ("rlnTomoParticleName", "rlnGroupNumber", "rlnGroupName"):
        if name in df:
            return df[name].astype(str).to_numpy()  # nextPYP group numbers are unique over the whole export
    raise InputError(
        f"{path}: nextPYP export lacks a particle column: required column _rlnGroupNumber (or _rlnTomoParticleName) "
        "is missing"
    )


def _dose_and_tilt(df, flavour, path, tilt_series: dict[str, pd.DataFrame] | None, stack_index):
    """Cumulative dose (e⁻/Å², end of exposure; None when the file has none) and tilt (°) per image."""
    dose = tilt = None
    if "rlnCtfBfactor" in df:
        dose = -_float_col(df, "rlnCtfBfactor", path, "") / 4.0
    if "rlnCtfScalefactor" in df:
        scale = np.clip(_float_col(df, "rlnCtfScalefactor", path, ""), -1.0, 1.0)
        tilt = np.degrees(np.arccos(scale))
    if flavour == "relion5" and (dose is None or tilt is None):
        per_tilt = _relion5_tilt_info(df, path, tilt_series, stack_index)
        dose = per_tilt["dose"] if dose is None else dose
        tilt = per_tilt["tilt"] if tilt is None else tilt
    if tilt is None:
        raise InputError(f"{path}: required column _rlnCtfScalefactor is missing (cos of the tilt angle)")
    return dose, tilt


def _relion5_tilt_info(df, path, tilt_series, stack_index) -> dict[str, np.ndarray]:
    n = len(df)
    out = {"dose": None, "tilt": None}
    if "rlnMicrographPreExposure" in df:
        out["dose"] = _float_col(df, "rlnMicrographPreExposure", path, "")
        # the pre-exposure is the dose at the start: convert per tomogram
        tomo = df["rlnTomoName"].astype(str).to_numpy() if "rlnTomoName" in df else np.zeros(n, dtype=object)
        for rows in pd.Series(np.arange(n)).groupby(tomo).indices.values():
            values, inverse = np.unique(out["dose"][rows], return_inverse=True)
            out["dose"][rows] = _end_dose(values)[inverse]
    if "rlnTomoNominalStageTiltAngle" in df:
        out["tilt"] = _float_col(df, "rlnTomoNominalStageTiltAngle", path, "")
    if (out["dose"] is None or out["tilt"] is None) and tilt_series is not None:
        require_columns(df, ["rlnTomoName"], path, "to look up tilts in the tilt-series STAR")
        frame = _float_col(df, "rlnTiltIndex", path, "", default=stack_index.astype(np.float64)).astype(np.int64)
        dose, tilt = np.full(n, np.nan), np.full(n, np.nan)
        for t, rows in pd.Series(np.arange(n)).groupby(df["rlnTomoName"].astype(str).to_numpy()).indices.items():
            if t not in tilt_series:
                raise InputError(f"{path}: tomogram {t!r} is not in the tilt-series STAR file(s)")
            ts = tilt_series[t]
            if np.any(frame[rows] >= len(ts)) or np.any(frame[rows] < 0):
                raise InputError(f"{path}: tomogram {t!r}: tilt index out of range of its {len(ts)} tilts")
            if "rlnMicrographPreExposure" in ts:
                dose[rows] = _end_dose(ts["rlnMicrographPreExposure"].to_numpy(np.float64))[frame[rows]]
            if "rlnTomoNominalStageTiltAngle" in ts:
                tilt[rows] = ts["rlnTomoNominalStageTiltAngle"].to_numpy(np.float64)[frame[rows]]
        if out["dose"] is None and np.isfinite(dose).all():
            out["dose"] = dose
        if out["tilt"] is None and np.isfinite(tilt).all():
            out["tilt"] = tilt
    if out["tilt"] is None:
        raise InputError(
            f"{path}: no tilt angle: required column _rlnCtfScalefactor or _rlnTomoNominalStageTiltAngle is missing "
            "(or pass the tomograms/tilt-series STAR as tilt_series_star)"
        )
    return out


def _reject_3d_subtomograms(df: pd.DataFrame, stack_names, star_dir: Path, datadir: Path | None, path: Path) -> None:
    """Raise a clear error for RELION 4/5 particle files whose images are 3-D pseudo-subtomograms."""
    if "rlnCtfImage" in df:  # per-particle 3-D CTF volumes go with 3-D subtomograms
        raise InputError(f"{path}: _rlnCtfImage found: {_NO_3D}")
    if len(stack_names):
        found = resolve_stack(str(stack_names[0]), star_dir, datadir)
        if found is not None and not found.name.endswith(".mrcs"):
            nx, ny, nz, ispg = _stack_shape(str(found))
            if ispg != 0 and nz > 1 and nx == ny == nz:
                raise InputError(f"{path}: {found} is a 3-D pseudo-subtomogram; {_NO_3D}")


def _image_table(
    path: Path, blocks: dict[str, Block], image_block: str, optics_name: str | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The image rows with their optics group's columns joined, and each row's ``_rlnImageName`` (index@stack)
    split into a 0-based int64 index in its stack and the stack name as written in the file."""
    df = join_optics(blocks[image_block].reset_index(drop=True), blocks[optics_name] if optics_name else None, path)
    require_columns(df, ["rlnImageName"], path, "it names each tilt image as index@stack")
    stack_index, stack_names = split_image_name(df["rlnImageName"], path)
    return df, stack_index, stack_names


def _group_images(df: pd.DataFrame, flavour: str, path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Particle names (in order of first appearance) and each particle's image rows (int64, in file order)."""
    keys = _group_keys(df, flavour, path)
    codes, uniques = pd.factorize(keys, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    image_indices = [order[bounds[i] : bounds[i + 1]].astype(np.int64) for i in range(len(uniques))]
    return [str(u) for u in uniques], image_indices


def _shift(df: pd.DataFrame, path: Path, px: float) -> np.ndarray:
    """In-plane origin (n, 2) Å per image: ``_rlnOriginX/YAngst``, else ``_rlnOriginX/Y`` (px) × ``px`` (Å/px),
    else zero."""
    if "rlnOriginXAngst" in df or "rlnOriginYAngst" in df:
        return np.stack([_float_col(df, f"rlnOrigin{a}Angst", path, "shift (Å)") for a in "XY"], axis=-1)
    if "rlnOriginX" in df or "rlnOriginY" in df:
        return np.stack([_float_col(df, f"rlnOrigin{a}", path, "shift (px)") for a in "XY"], axis=-1) * px
    return np.zeros((len(df), 2))


def _ctf_columns(df: pd.DataFrame, path: Path, ctf: str) -> dict:
    """Per-image CTF, keyed as :class:`ParticleSeries` fields: defocus U/V (Å) and angle (°), voltage (kV), Cs (mm),
    amplitude contrast, phase shift (°) and ``has_ctf``; by the ``ctf`` choice
    (:func:`~tomodrgn.io.particle_series.use_ctf`), :data:`~tomodrgn.physics.ctf.NO_CTF` (CTF ≡ 1) without one."""
    if not use_ctf(df.columns, path, ctf):
        return {**no_ctf_columns(voltage_or_default(df, path)), "has_ctf": False}
    defocus_u = _float_col(df, "rlnDefocusU", path, "CTF")
    return {
        "defocus_u": defocus_u,
        "defocus_v": _float_col(df, "rlnDefocusV", path, "CTF", default=defocus_u),
        "defocus_angle": _float_col(df, "rlnDefocusAngle", path, "CTF", default=0.0),
        "voltage": _float_col(df, "rlnVoltage", path, "CTF (kV)"),
        "cs": _float_col(df, "rlnSphericalAberration", path, "CTF (mm)"),
        "amplitude_contrast": _float_col(df, "rlnAmplitudeContrast", path, "CTF"),
        "phase_shift": _float_col(df, "rlnPhaseShift", path, "CTF", default=0.0),
        "has_ctf": True,
    }


def _image_columns(
    df: pd.DataFrame,
    flavour: str,
    path: Path,
    px: float,
    stack_index: np.ndarray,
    tilt_series_star: str | Path | None,
    ctf: str = "auto",
    dose: str = "auto",
) -> dict:
    """Per-image pose, CTF, dose and tilt, keyed as :class:`ParticleSeries` fields: ``rotation`` (n, 3, 3) from
    ``_rlnAngleRot/Tilt/Psi``, ``shift`` (n, 2) Å, the CTF (:func:`_ctf_columns`, by the ``ctf`` choice),
    cumulative end-of-exposure dose (e⁻/Å²; 0 and ``has_dose`` False without dose columns, warned by the ``dose``
    choice) and tilt (°)."""
    angles = [_float_col(df, c, path, "particle pose") for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")]
    columns = {"rotation": euler_to_matrix(*angles), "shift": _shift(df, path, px), **_ctf_columns(df, path, ctf)}
    tilt_series = read_tilt_series_star(tilt_series_star) if tilt_series_star is not None else None
    doses, columns["tilt"] = _dose_and_tilt(df, flavour, path, tilt_series, stack_index)
    columns["has_dose"] = doses is not None
    if doses is None:
        names = "_rlnCtfBfactor" + (", _rlnMicrographPreExposure" if flavour == "relion5" else "")
        doses = no_dose(len(df), path, dose, names)
    columns["dose"] = doses
    return columns


def _resolve_stacks(stack_names: np.ndarray, star_dir: Path, ddir: Path | None, path: Path) -> np.ndarray:
    """Each image's stack file (object array of path strings), found under ``ddir`` or next to the STAR; each
    distinct stack is looked up once."""
    resolved: dict[str, str] = {}
    for name in pd.unique(stack_names):
        found = resolve_stack(name, star_dir, ddir)
        if found is None:
            where = f"{ddir} or {star_dir}" if ddir else str(star_dir)
            raise InputError(
                f"{path}: image stack {name} not found (looked in {where}); pass --datadir (the folder the image "
                "paths are relative to)"
            )
        resolved[name] = str(found)
    return np.array([resolved[n] for n in stack_names], dtype=object)


def _particle_metadata(
    df: pd.DataFrame, first: np.ndarray, path: Path, px: float, tomogram_pixel_size: float | None
) -> tuple[np.ndarray | None, list[str] | None, np.ndarray | None]:
    """Optional per-particle values, from each particle's first image row ``first``: position (n, 3) Å
    (``_rlnCenteredCoordinateX/Y/ZAngst``, else ``_rlnCoordinateX/Y/Z`` × the tomogram pixel size, default ``px``
    Å/px), tomogram names (only with a position) and class labels (``_rlnClassNumber``); None where absent."""
    position = tomogram = None
    if all(f"rlnCenteredCoordinate{a}Angst" in df for a in "XYZ"):
        position = np.stack([_float_col(df, f"rlnCenteredCoordinate{a}Angst", path, "")[first] for a in "XYZ"], -1)
    elif all(f"rlnCoordinate{a}" in df for a in "XYZ"):
        scale = tomogram_pixel_size if tomogram_pixel_size is not None else px
        position = np.stack([_float_col(df, f"rlnCoordinate{a}", path, "")[first] for a in "XYZ"], -1) * scale
    if position is not None:
        if "rlnTomoName" in df:
            tomogram = [str(t) for t in df["rlnTomoName"].to_numpy()[first]]
        elif "rlnMicrographName" in df:
            tomogram = [str(t) for t in df["rlnMicrographName"].to_numpy()[first]]
        elif "rlnGroupName" in df:
            tomogram = [str(g).rpartition("_")[0] or str(g) for g in df["rlnGroupName"].to_numpy()[first]]
    class_label = None
    if "rlnClassNumber" in df:
        class_label = pd.to_numeric(df["rlnClassNumber"], errors="coerce").to_numpy()[first]
    return position, tomogram, class_label


def read_image_rows(
    path: Path,
    blocks: dict[str, Block],
    image_block: str,
    optics_name: str | None,
    flavour: str,
    *,
    pixel_size: float | None = None,
    datadir: str | Path | None = None,
    tomogram_pixel_size: float | None = None,
    tilt_series_star: str | Path | None = None,
    ctf: str = "auto",
    dose: str = "auto",
) -> ParticleSeries:
    """Read a particle STAR with one row per tilt image (Warp/M, RELION 5 per-image rows, nextPYP).

    Arguments as :func:`tomodrgn.io.particles.read_particles`. ``tilt_series_star``: RELION 5 tomograms or
    tilt-series STAR, for the dose and tilt angles when the particle rows lack them (matched by ``_rlnTomoName``
    and the tilt index ``_rlnTiltIndex``, else the 0-based stack index). A pre-exposure (dose at the start of a
    tilt) becomes a cumulative end-of-exposure dose by adding the step to the tomogram's next pre-exposure (last
    tilt: the step before). RELION 4/5 3-D pseudo-subtomograms are refused.
    """
    df, stack_index, stack_names = _image_table(path, blocks, image_block, optics_name)
    star_dir = path.parent
    ddir = Path(datadir).absolute() if datadir is not None else None
    if flavour == "relion5":
        _reject_3d_subtomograms(df, stack_names, star_dir, ddir, path)
    particle_names, image_indices = _group_images(df, flavour, path)

    # geometry, CTF, dose (before the stacks: opening thousands of files takes a while)
    first_stack = resolve_stack(str(stack_names[0]), star_dir, ddir) if len(stack_names) else None
    px = _pixel_size(df, pixel_size, path, first_stack)
    columns = _image_columns(df, flavour, path, px, stack_index, tilt_series_star, ctf, dose)
    stack_path = _resolve_stacks(stack_names, star_dir, ddir, path)
    box = _check_stacks(stack_path, stack_index, path, flavour)
    check_image_size(df, box, path, px)

    first = np.array([r[0] for r in image_indices], dtype=np.int64)
    position, tomogram, class_label = _particle_metadata(df, first, path, px, tomogram_pixel_size)
    return ParticleSeries(
        star_path=path,
        flavour=flavour,
        blocks=blocks,
        images=blocks[image_block],
        pixel_size=px,
        box_size=box,
        particle_names=particle_names,
        image_indices=image_indices,
        stack_path=stack_path,
        stack_index=stack_index,
        **columns,
        image_block=image_block,
        position=position,
        tomogram=tomogram,
        class_label=class_label,
        datadir=ddir,
        ctf_premultiplied=_premultiplied(df, path) if columns["has_ctf"] else None,
    )
