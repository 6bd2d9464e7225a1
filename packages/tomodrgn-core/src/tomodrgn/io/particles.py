"""Particle tilt-series from STAR files: Warp/M image series, RELION 5 tomography (2-D stacks), nextPYP.

Every reader returns a :class:`ParticleSeries`: one row per tilt image (file order), grouped into particles, with
poses (RELION ZYZ matrices), shifts (Å), CTF, cumulative dose (e⁻/Å², at the end of each tilt's exposure) and tilt
(degrees). Images stay on disk: stacks are memory-mapped and read image by image (:meth:`ParticleSeries.read_images`).
"""

from __future__ import annotations

import mmap
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import MrcError, mmap_mrc, read_mrc_header
from tomodrgn.io.pixel_size import check_pixel_size, choose_pixel_size
from tomodrgn.io.star import (
    Block,
    find_optics_block,
    find_particle_block,
    join_optics,
    read_star,
    require_columns,
    split_image_name,
    star_column,
    write_star,
)
from tomodrgn.physics.pose import euler_to_matrix

FLAVOURS = ("warp", "relion5", "nextpyp")
MAX_OPEN_STACKS = 64  # memory maps kept open at once (least recently used are closed)


@dataclass
class ParticleSeries:
    """Tilt images of all particles of a STAR file (see ``docs/architecture.md``). Per-image arrays have len(images).

    ``tilt`` is in degrees; read from ``_rlnCtfScalefactor = cos(tilt)`` its sign is lost (values ≥ 0).
    ``position`` (n_particles, 3) Å in the tomogram and ``tomogram`` (names per particle) are None when the file has
    no coordinates; ``class_label`` (n_particles,) is ``_rlnClassNumber`` of each particle's first image, or None.
    """

    star_path: Path
    flavour: str
    blocks: dict[str, Block]
    images: pd.DataFrame
    pixel_size: float
    box_size: int
    particle_names: list[str]
    image_indices: list[np.ndarray]
    stack_path: np.ndarray
    stack_index: np.ndarray
    rotation: np.ndarray
    shift: np.ndarray
    defocus_u: np.ndarray
    defocus_v: np.ndarray
    defocus_angle: np.ndarray
    voltage: np.ndarray
    cs: np.ndarray
    amplitude_contrast: np.ndarray
    phase_shift: np.ndarray
    dose: np.ndarray
    tilt: np.ndarray
    image_block: str = "particles"
    position: np.ndarray | None = None
    tomogram: list[str] | None = None
    class_label: np.ndarray | None = None
    datadir: Path | None = None
    _stacks: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    @property
    def n_particles(self) -> int:
        return len(self.particle_names)

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def tilt_counts(self) -> np.ndarray:
        """Number of tilt images of each particle, int64 (n_particles,)."""
        return np.array([len(r) for r in self.image_indices], dtype=np.int64)

    def ctf_params(self, rows: np.ndarray | None = None) -> np.ndarray:
        """CTF parameters (n, 7): defocus U, V (Å), angle (°), voltage (kV), Cs (mm), amplitude contrast, phase (°)."""
        sel = slice(None) if rows is None else np.asarray(rows)
        cols = (self.defocus_u, self.defocus_v, self.defocus_angle, self.voltage, self.cs)
        return np.stack([c[sel] for c in (*cols, self.amplitude_contrast, self.phase_shift)], axis=-1)

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """Images of rows ``rows`` of ``images`` as float32 (len(rows), D, D); NaN/inf pixels raise InputError.

        Reads through memory maps; the pages read are released again so iterating a dataset larger than RAM keeps
        the resident memory bounded.
        """
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.box_size, self.box_size), dtype=np.float32)
        for k, row in enumerate(rows):
            path = self.stack_path[row]
            stack = self._stack(path)
            index = int(self.stack_index[row])
            out[k] = stack[index]
            _release_pages(stack, index)
            if not np.isfinite(out[k]).all():
                raise InputError(
                    f"particle {self.particle_of(row)!r}: image {index + 1}@{path} (row {row}) has NaN or inf pixels"
                )
        return out

    def particle_of(self, row: int) -> str:
        """Name of the particle that image row ``row`` belongs to."""
        if not hasattr(self, "_row_particle"):
            lookup = np.empty(self.n_images, dtype=np.int64)
            for p, r in enumerate(self.image_indices):
                lookup[r] = p
            self._row_particle = lookup
        return self.particle_names[int(self._row_particle[row])]

    def _stack(self, path: str) -> np.ndarray:
        stacks = self._stacks
        if path in stacks:
            stacks.move_to_end(path)
            return stacks[path]
        try:
            data = mmap_mrc(path)
        except MrcError as e:
            raise InputError(str(e)) from e
        stacks[path] = data
        while len(stacks) > MAX_OPEN_STACKS:
            stacks.popitem(last=False)
        return data

    def __getstate__(self) -> dict:
        # memory maps would pickle as full in-memory copies (DataLoader workers): reopen them lazily instead
        state = dict(self.__dict__)
        state["_stacks"] = OrderedDict()
        state.pop("_row_particle", None)
        return state


def _release_pages(stack: np.ndarray, index: int) -> None:
    """Drop the pages of image ``index`` from this process's resident set (read-only file mapping: always safe)."""
    mm = getattr(stack, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        base = stack.offset - stack.offset % mmap.ALLOCATIONGRANULARITY
        start = stack.offset - base + index * stack[0].nbytes
        end = start + stack[0].nbytes
        page = mmap.PAGESIZE
        start_aligned = start - start % page
        end_aligned = min(len(mm), -(-end // page) * page)
        if end_aligned > start_aligned:
            mm.madvise(mmap.MADV_DONTNEED, start_aligned, end_aligned - start_aligned)
    except (AttributeError, ValueError, OSError):
        pass


# ----------------------------------------------------------------------------------------------------------- reading
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


def resolve_stack(name: str, star_dir: Path, datadir: Path | None) -> Path | None:
    """Find a stack named in a STAR file: under ``datadir`` (as written, then by file name), then next to the STAR."""
    p = Path(name)
    candidates = []
    if p.is_absolute():
        candidates.append(p)
    if datadir is not None:
        candidates += [datadir / p, datadir / p.name]
    candidates += [star_dir / p, star_dir / p.name, Path.cwd() / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return None


def _float_col(df: pd.DataFrame, name: str, path: Path, what: str, default: float | np.ndarray | None = None):
    if name in df:
        values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, copy=True)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise InputError(f"{path}: column {star_column(name)} row {bad[0]} is not a finite number")
        return values
    if default is None:
        raise InputError(f"{path}: required column {star_column(name)} is missing ({what})")
    return np.broadcast_to(np.asarray(default, dtype=np.float64), (len(df),)).copy()


def _pixel_size(df: pd.DataFrame, argument: float | None, path: Path, first_stack: Path | None) -> float:
    """Pixel size (Å) of the stacks: the argument, else the file's columns, else the first stack's MRC header
    (rules in :mod:`tomodrgn.io.pixel_size`)."""
    from_file = None
    for name in ("rlnImagePixelSize", "rlnDetectorPixelSize"):
        if name in df:
            values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64)
            if name == "rlnDetectorPixelSize" and "rlnMagnification" in df:  # RELION 3.0: µm detector pixel / mag
                mag = pd.to_numeric(df["rlnMagnification"], errors="coerce").to_numpy(dtype=np.float64)
                values = values * 1e4 / mag
            values = np.unique(values)
            if len(values) != 1 or not np.isfinite(values[0]) or values[0] <= 0:
                raise InputError(f"{path}: column {star_column(name)} must hold one positive pixel size, got {values}")
            from_file = float(values[0])
            break
    header = None
    if argument is None and first_stack is not None:
        header = read_mrc_header(first_stack).pixel_size
    return choose_pixel_size(from_file, header, argument, path, first_stack)


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
    """Cumulative dose (e⁻/Å², end of exposure) and tilt (°) per image."""
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
    if dose is None:
        raise InputError(f"{path}: required column _rlnCtfBfactor is missing (dose = −_rlnCtfBfactor / 4)")
    if tilt is None:
        raise InputError(f"{path}: required column _rlnCtfScalefactor is missing (cos of the tilt angle)")
    return dose, tilt


def _end_dose(pre_exposure: np.ndarray) -> np.ndarray:
    """Cumulative dose at the end of each tilt from pre-exposures (start): + the step to the next tilt's start."""
    order = np.argsort(pre_exposure, kind="stable")
    s = pre_exposure[order]
    steps = np.diff(s)
    own = np.append(steps, steps[-1] if len(steps) else 0.0)
    out = np.empty_like(pre_exposure)
    out[order] = s + own
    return out


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
    if out["dose"] is None:
        raise InputError(
            f"{path}: no dose: required column _rlnCtfBfactor or _rlnMicrographPreExposure is missing "
            "(or pass the tomograms/tilt-series STAR as tilt_series_star)"
        )
    if out["tilt"] is None:
        raise InputError(
            f"{path}: no tilt angle: required column _rlnCtfScalefactor or _rlnTomoNominalStageTiltAngle is missing "
            "(or pass the tomograms/tilt-series STAR as tilt_series_star)"
        )
    return out


def read_tilt_series_star(path: str | Path) -> dict[str, pd.DataFrame]:
    """Per-tomogram tilt tables (tomogram name → one row per tilt, acquisition-file order) from RELION 5 STARs.

    ``path`` is either a tomograms STAR (``_rlnTomoName`` + ``_rlnTomoTiltSeriesStarFile``, resolved next to it or
    its parent folders) or a tilt-series STAR with one block per tomogram (block name = tomogram name).
    """
    path = Path(path)
    blocks = {k: v for k, v in read_star(path).items() if isinstance(v, pd.DataFrame)}
    for df in blocks.values():
        if "rlnTomoTiltSeriesStarFile" in df and "rlnTomoName" in df:
            out = {}
            for name, ts_file in zip(df["rlnTomoName"].astype(str), df["rlnTomoTiltSeriesStarFile"].astype(str)):
                found = None
                for base in (path.parent, *path.parent.parents):
                    for c in (base / ts_file, base / Path(ts_file).name):
                        if c.is_file():
                            found = c
                            break
                    if found:
                        break
                if found is None:
                    raise InputError(f"{path}: tilt-series STAR {ts_file} of tomogram {name!r} not found")
                ts_blocks = read_tilt_series_star(found)
                out[name] = ts_blocks.get(name, next(iter(ts_blocks.values())))
            return out
    return blocks


def _stack_shape(path: str) -> tuple[int, int, int, int]:
    """(nx, ny, nz, ispg) of an MRC file from its header, checked against the file size (see ``read_mrc_header``)."""
    h = read_mrc_header(path)
    return h.nx, h.ny, h.nz, h.ispg


_NO_3D = (
    "RELION 4/5 3-D pseudo-subtomograms are not supported (re-extract the particles as 2-D stacks with one STAR row "
    "per tilt image, e.g. a Warp/M image-series export)"
)


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


def _check_stacks(stack_path, stack_index, path: Path, flavour: str) -> int:
    """Open each stack's header; check counts, indices, square even boxes. Returns the box size D."""
    box = None
    codes, uniques = pd.factorize(stack_path, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for u, stack in enumerate(uniques):
        rows = order[bounds[u] : bounds[u + 1]]
        nx, ny, nz, ispg = _stack_shape(stack)
        is_volume = ispg != 0 and nz > 1
        if flavour == "relion5" and is_volume and nz == nx == ny and not str(stack).endswith(".mrcs"):
            raise InputError(f"{path}: {stack} is a 3-D pseudo-subtomogram; {_NO_3D}")
        if len(rows) > nz:
            raise InputError(f"{path}: stack/star count mismatch: {len(rows)} rows use {stack}, which has {nz} images")
        bad = rows[stack_index[rows] >= nz]
        if len(bad):
            raise InputError(
                f"{path}: row {bad[0]}: stack index {stack_index[bad[0]] + 1} out of range for {stack} ({nz} images)"
            )
        if nx != ny:
            raise InputError(f"{stack}: images are {nx}×{ny}; square images are required")
        if nx % 2:
            raise InputError(f"{stack}: box size D = {nx} is not even; an even D is required")
        if box is None:
            box = nx
        elif box != nx:
            raise InputError(f"{stack}: box size {nx} differs from {box} of the other stacks")
    if box is None:
        raise InputError(f"{path}: no images")
    return box


def read_particles(
    star: str | Path,
    *,
    pixel_size: float | None = None,
    source: str = "auto",
    datadir: str | Path | None = None,
    tomogram_pixel_size: float | None = None,
    tilt_series_star: str | Path | None = None,
) -> ParticleSeries:
    """Read a particle STAR file with one row per tilt image (Warp/M, RELION 5 2-D stacks, nextPYP).

    ``source``: "auto" | "warp" | "relion5" | "nextpyp". ``pixel_size`` (Å, positive) overrides the STAR's and the
    MRC headers' values; without it the STAR's is used, else the first stack's MRC header (see
    :mod:`tomodrgn.io.pixel_size`).
    ``datadir``: folder of the stacks (default: the STAR's folder). ``tomogram_pixel_size`` (Å) scales
    ``_rlnCoordinateX/Y/Z`` (default: ``pixel_size``). ``tilt_series_star``: RELION 5 tomograms or tilt-series
    STAR, for the dose and tilt angles when the particle rows lack them (matched by ``_rlnTomoName`` and the tilt
    index ``_rlnTiltIndex``, else the 0-based stack index). A pre-exposure (dose at the start of a tilt) becomes a
    cumulative end-of-exposure dose by adding the step to the tomogram's next pre-exposure (last tilt: the step
    before). Unsupported: RELION 5 3-D pseudo-subtomograms and
    2-D stacks with one row per particle (they need the tilt-series projection geometry).
    """
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, "pixel_size")
    path = Path(star).absolute()
    blocks = read_star(path)
    image_block = find_particle_block(blocks, path)
    optics_name = find_optics_block(blocks)
    raw = blocks[image_block]
    if source == "auto":
        flavour = detect_flavour(raw, path)
    elif source in FLAVOURS:
        flavour = source
    else:
        raise InputError(f"unknown source {source!r}; expected one of auto, {', '.join(FLAVOURS)}")
    df = join_optics(raw.reset_index(drop=True), blocks[optics_name] if optics_name else None, path)
    require_columns(df, ["rlnImageName"], path, "it names each tilt image as index@stack")
    if flavour == "relion5" and "rlnTomoVisibleFrames" in df:
        raise InputError(
            f"{path}: RELION 5 2-D stacks with one row per particle (_rlnTomoVisibleFrames) are not supported: "
            "they need the tilt-series projection geometry; export one row per tilt image (e.g. Warp/M image series)"
        )

    stack_index, stack_names = split_image_name(df["rlnImageName"], path)
    star_dir = path.parent
    ddir = Path(datadir).absolute() if datadir is not None else None
    if flavour == "relion5":
        _reject_3d_subtomograms(df, stack_names, star_dir, ddir, path)

    # grouping
    keys = _group_keys(df, flavour, path)
    codes, uniques = pd.factorize(keys, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    image_indices = [order[bounds[i] : bounds[i + 1]].astype(np.int64) for i in range(len(uniques))]
    particle_names = [str(u) for u in uniques]

    # geometry, CTF, dose
    first_stack = resolve_stack(str(stack_names[0]), star_dir, ddir) if len(stack_names) else None
    px = _pixel_size(df, pixel_size, path, first_stack)
    angles = [_float_col(df, c, path, "particle pose") for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")]
    rotation = euler_to_matrix(*angles)
    if "rlnOriginXAngst" in df or "rlnOriginYAngst" in df:
        shift = np.stack([_float_col(df, f"rlnOrigin{a}Angst", path, "shift (Å)") for a in "XY"], axis=-1)
    elif "rlnOriginX" in df or "rlnOriginY" in df:
        shift = np.stack([_float_col(df, f"rlnOrigin{a}", path, "shift (px)") for a in "XY"], axis=-1) * px
    else:
        shift = np.zeros((len(df), 2))
    defocus_u = _float_col(df, "rlnDefocusU", path, "CTF")
    defocus_v = _float_col(df, "rlnDefocusV", path, "CTF", default=defocus_u)
    defocus_angle = _float_col(df, "rlnDefocusAngle", path, "CTF", default=0.0)
    voltage = _float_col(df, "rlnVoltage", path, "CTF (kV)")
    cs = _float_col(df, "rlnSphericalAberration", path, "CTF (mm)")
    w = _float_col(df, "rlnAmplitudeContrast", path, "CTF")
    phase = _float_col(df, "rlnPhaseShift", path, "CTF", default=0.0)
    tilt_series = read_tilt_series_star(tilt_series_star) if tilt_series_star is not None else None
    dose, tilt = _dose_and_tilt(df, flavour, path, tilt_series, stack_index)

    # stacks (after the cheap column checks: opening thousands of files takes a while)
    resolved: dict[str, str] = {}
    for name in pd.unique(stack_names):
        found = resolve_stack(name, star_dir, ddir)
        if found is None:
            where = f"{ddir} or {star_dir}" if ddir else str(star_dir)
            raise InputError(f"{path}: image stack {name} not found (looked in {where}); pass datadir")
        resolved[name] = str(found)
    stack_path = np.array([resolved[n] for n in stack_names], dtype=object)
    box = _check_stacks(stack_path, stack_index, path, flavour)

    # optional per-particle metadata
    first = np.array([r[0] for r in image_indices], dtype=np.int64)
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

    return ParticleSeries(
        star_path=path,
        flavour=flavour,
        blocks=blocks,
        images=raw,
        pixel_size=px,
        box_size=box,
        particle_names=particle_names,
        image_indices=image_indices,
        stack_path=stack_path,
        stack_index=stack_index,
        rotation=rotation,
        shift=shift,
        defocus_u=defocus_u,
        defocus_v=defocus_v,
        defocus_angle=defocus_angle,
        voltage=voltage,
        cs=cs,
        amplitude_contrast=w,
        phase_shift=phase,
        dose=dose,
        tilt=tilt,
        image_block=image_block,
        position=position,
        tomogram=tomogram,
        class_label=class_label,
        datadir=ddir,
    )


# ----------------------------------------------------------------------------------------------------------- writing
def write_particle_subset(series: ParticleSeries, particle_indices, out_star: str | Path) -> Path:
    """Write the chosen particles (indices or a boolean mask; all their tilt images) in the input's flavour.

    Every block and column is kept; only the image block loses the rows of other particles (file order kept).
    Stack names in ``_rlnImageName`` are kept as written when they still resolve from ``out_star``'s folder (or the
    ``datadir`` used to read); otherwise they are rewritten as absolute paths, so the subset stays readable.
    """
    out_star = Path(out_star).absolute()
    particle_indices = np.asarray(particle_indices).reshape(-1)
    if particle_indices.dtype == bool:
        if len(particle_indices) != series.n_particles:
            raise InputError(f"particle mask has {len(particle_indices)} entries for {series.n_particles} particles")
        particle_indices = np.flatnonzero(particle_indices)
    particle_indices = particle_indices.astype(np.int64)
    if len(particle_indices) and (particle_indices.min() < 0 or particle_indices.max() >= series.n_particles):
        raise InputError(f"particle index out of range 0..{series.n_particles - 1}")
    chosen = np.zeros(series.n_particles, dtype=bool)
    chosen[particle_indices] = True
    rows = np.sort(np.concatenate([series.image_indices[p] for p in np.flatnonzero(chosen)] or [np.empty(0, int)]))
    subset = series.images.iloc[rows].reset_index(drop=True).copy()
    if "rlnImageName" in subset:
        names = subset["rlnImageName"].astype(str).to_numpy()
        new = []
        cache: dict[str, str] = {}
        for name, absolute in zip(names, series.stack_path[rows]):
            idx, at, stack = name.rpartition("@") if "@" in name else ("", "", name)
            if stack not in cache:
                found = resolve_stack(stack, out_star.parent, series.datadir)
                cache[stack] = stack if found is not None and str(found) == absolute else absolute
            new.append(f"{idx}{at}{cache[stack]}")
        subset["rlnImageName"] = new
    blocks = dict(series.blocks)
    blocks[series.image_block] = subset
    return write_star(blocks, out_star)
