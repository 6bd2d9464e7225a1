"""The particle data model shared by every STAR reader, and the helpers the readers share.

:class:`ParticleSeries`: one row per tilt image (file order), grouped into particles, with poses (RELION ZYZ
matrices), shifts (Å), CTF, cumulative dose (e⁻/Å², at the end of each tilt's exposure) and tilt (degrees). Images
stay on disk: stacks are memory-mapped and read image by image (:meth:`ParticleSeries.read_images`, through
:mod:`tomodrgn.io.stack_reader`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import read_mrc_header
from tomodrgn.io.pixel_size import choose_pixel_size
from tomodrgn.io.stack_reader import READER
from tomodrgn.io.star import Block, star_column
from tomodrgn.physics.ctf import DEFAULT_VOLTAGE, NO_CTF


@dataclass
class StackSet:
    """The files of a RELION 5 / WarpTools 2-D stack particle set, kept for writing subsets in the same form.

    ``particle_block`` is the name of the one-row-per-particle block in ``blocks`` (the particles STAR's blocks);
    ``particle_rows`` (n_particles,) the row of each particle in it; ``tomograms_blocks`` every block of the
    tomograms STAR; ``optimisation_blocks`` the optimisation set's blocks (None when read from a particles STAR).
    """

    particles_star: Path
    tomograms_star: Path
    particle_block: str
    particle_rows: np.ndarray
    tomograms_blocks: dict[str, Block]
    optimisation_set: Path | None = None
    optimisation_blocks: dict[str, Block] | None = None


@dataclass
class ParticleSeries:
    """Tilt images of all particles of a STAR file (see ``docs/architecture.md``). Per-image arrays have len(images).

    ``tilt`` is in degrees; read from ``_rlnCtfScalefactor = cos(tilt)`` its sign is lost (values ≥ 0).
    ``position`` (n_particles, 3) Å in the tomogram and ``tomogram`` (names per particle) are None when the file has
    no coordinates; ``class_label`` (n_particles,) is ``_rlnClassNumber`` of each particle's first image, or None.
    ``stack_set``: the source files of a RELION 5 / WarpTools 2-D stack set (``images`` is then an internal
    per-image table; ``blocks`` are the particles STAR's blocks), else None.
    ``ctf_premultiplied`` (n_images,) bool: the image was multiplied by its CTF at extraction
    (``_rlnCtfDataAreCtfPremultiplied 1``, RELION 5 / WarpTools): it holds CTF² × projection, not CTF × projection
    (see :attr:`ctf_power`). None: no image is (Warp/M image series have no such column).
    ``has_ctf``: False when the images are taken as free of any CTF (no CTF columns, or ``ctf="none"``): the CTF
    fields then hold :data:`tomodrgn.physics.ctf.NO_CTF` (CTF ≡ 1). ``has_dose``: False when the file has no dose
    columns: ``dose`` is then 0 (dose weighting and the dose mask have no effect).
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
    stack_set: StackSet | None = None
    ctf_premultiplied: np.ndarray | None = None
    has_ctf: bool = True
    has_dose: bool = True

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

    def ctf_params(self, rows: np.ndarray | None = None, power: bool = False) -> np.ndarray:
        """CTF parameters (n, 7): defocus U, V (Å), angle (°), voltage (kV), Cs (mm), amplitude contrast, phase (°);
        with ``power`` (n, 8): and the power the CTF enters the image with (:attr:`ctf_power`)."""
        sel = slice(None) if rows is None else np.asarray(rows)
        cols = [self.defocus_u, self.defocus_v, self.defocus_angle, self.voltage, self.cs]
        cols += [self.amplitude_contrast, self.phase_shift] + ([self.ctf_power] if power else [])
        return np.stack([c[sel] for c in cols], axis=-1)

    @property
    def ctf_power(self) -> np.ndarray:
        """Power the CTF enters each image with, float64 (n_images,): 1, or 2 for CTF-premultiplied images."""
        if self.ctf_premultiplied is None:
            return np.ones(self.n_images)
        return np.where(np.asarray(self.ctf_premultiplied, dtype=bool), 2.0, 1.0)

    def without_ctf(self) -> ParticleSeries:
        """A copy whose images are taken as free of any CTF (CTF ≡ 1, ``--no-ctf``); ``self`` when already so."""
        if not self.has_ctf:
            return self
        return dataclasses.replace(self, **no_ctf_columns(self.voltage), ctf_premultiplied=None, has_ctf=False)

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """Images of rows ``rows`` of ``images`` as float32 (len(rows), D, D); NaN/inf pixels raise InputError.

        Read through this process's memory-mapped stacks (:mod:`tomodrgn.io.stack_reader`), releasing the pages read,
        so iterating a dataset larger than RAM keeps the resident memory bounded.
        """
        describe = lambda row: f"particle {self.particle_of(row)!r}"  # noqa: E731
        return READER.read(self.stack_path, self.stack_index, rows, self.box_size, describe)

    def particle_of(self, row: int) -> str:
        """Name of the particle that image row ``row`` belongs to."""
        lookup = np.empty(self.n_images, dtype=np.int64)
        for p, r in enumerate(self.image_indices):
            lookup[r] = p
        return self.particle_names[int(lookup[row])]


#: parent folders of the STAR's folder searched for a stack path written relative to a RELION project folder
PROJECT_LEVELS = 6


def resolve_stack(name: str, star_dir: Path, datadir: Path | None) -> Path | None:
    """Find a stack named in a STAR file (every flavour, one order): as written when absolute; under ``datadir`` (as
    written, then by file name); next to the STAR (as written, then by file name); under the STAR folder's parents
    (RELION writes paths relative to its project folder); under the working directory."""
    p = Path(name)
    candidates = []
    if p.is_absolute():
        candidates.append(p)
    if datadir is not None:
        candidates += [datadir / p, datadir / p.name]
    if not p.is_absolute():
        candidates += [star_dir / p, star_dir / p.name]
        candidates += [folder / p for folder in list(star_dir.parents)[:PROJECT_LEVELS]]
        candidates.append(Path.cwd() / p)
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


#: what a reader does with the CTF columns: ``auto`` reads them (none at all: CTF ≡ 1 with a warning; some: refused),
#: ``none`` takes the images as free of any CTF without reading them (``--no-ctf``, ``--ctf none``), ``unused`` reads
#: them when complete and asks for nothing (commands that use neither the CTF nor the dose)
CTF_CHOICES = ("auto", "none", "unused")
#: what a reader does without dose columns: ``auto`` warns that dose weighting and the dose mask are off, ``unused``
#: says nothing (the command does not weight by dose)
DOSE_CHOICES = ("auto", "unused")
#: the columns that say a file has a CTF at all, and those a CTF needs (the others have defaults)
DEFOCUS_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
CTF_REQUIRED = ("rlnDefocusU", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
_NO_CTF_HINT = "pass --no-ctf (backproject: --ctf none) to take the images as free of any CTF"


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """``value`` when one of ``choices``, else :class:`InputError` naming the argument ``name``."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def use_ctf(columns: Collection[str], path: Path, ctf: str) -> bool:
    """Whether to read the CTF from a file with ``columns`` (RELION names, every block that may hold them), by the
    ``ctf`` choice (:data:`CTF_CHOICES`). No defocus column: the images are free of any CTF (with ``auto``, one
    warning says so); a defocus column without the rest of :data:`CTF_REQUIRED`: :class:`InputError` naming them."""
    if ctf == "none":
        return False
    if not any(c in columns for c in DEFOCUS_COLUMNS):
        if ctf == "auto":
            warnings.warn(
                f"{path}: no CTF columns (_rlnDefocusU/V/Angle): the images are taken as free of any CTF (transfer "
                "function 1); pass --no-ctf (backproject: --ctf none) to say so",
                stacklevel=4,
            )
        return False
    missing = [star_column(c) for c in CTF_REQUIRED if c not in columns]
    if missing and ctf == "auto":
        raise InputError(f"{path}: incomplete CTF: required column(s) {', '.join(missing)} missing; {_NO_CTF_HINT}")
    return not missing


def no_ctf_columns(voltage: np.ndarray) -> dict[str, np.ndarray]:
    """The CTF fields of images free of any CTF (:data:`tomodrgn.physics.ctf.NO_CTF`, CTF ≡ 1), keyed as
    :class:`ParticleSeries` fields, one value per entry of ``voltage`` (kV, kept: it scales the exposure filter)."""
    n = len(voltage)
    columns = {k: np.full(n, v, dtype=np.float64) for k, v in NO_CTF.items()}
    columns["voltage"] = np.asarray(voltage, dtype=np.float64).copy()
    return columns


def voltage_or_default(df: pd.DataFrame, path: Path) -> np.ndarray:
    """``_rlnVoltage`` (kV) per row, :data:`tomodrgn.physics.ctf.DEFAULT_VOLTAGE` where the file has none."""
    return _float_col(df, "rlnVoltage", path, "", default=DEFAULT_VOLTAGE)


def no_dose(n: int, path: Path, dose: str, columns: str) -> np.ndarray:
    """Cumulative doses of ``n`` images of a file without dose ``columns`` (named in the warning): 0, so that dose
    weighting and the dose mask have no effect; with ``dose="auto"`` one warning says so."""
    if dose == "auto":
        warnings.warn(f"{path}: no dose columns ({columns}): dose weighting and the dose mask are off", stacklevel=4)
    return np.zeros(n)


def check_image_size(df: pd.DataFrame, box: int, path: Path, pixel_size: float) -> None:
    """One warning when ``_rlnImageSize`` (optics joined) differs from the stacks' box ``box`` px: the box is always
    read from the stacks, so the images stay usable, but a STAR written before the stacks were rescaled has a stale
    pixel size (the warning names the one used, ``pixel_size`` Å)."""
    if "rlnImageSize" not in df:
        return
    sizes = np.unique(_float_col(df, "rlnImageSize", path, ""))
    other = sizes[sizes != box]
    if len(other):
        warnings.warn(
            f"{path}: column _rlnImageSize says {other[0]:g} px but the stacks are {box} px: using the stacks' {box} "
            f"px at {pixel_size:g} Å/px (if the stacks were rescaled after the STAR was written, pass --pixel-size)",
            stacklevel=4,
        )


def _premultiplied(df: pd.DataFrame, path: Path) -> np.ndarray | None:
    """Per row: ``_rlnCtfDataAreCtfPremultiplied`` (optics block joined) is 1; None when the column is absent."""
    if "rlnCtfDataAreCtfPremultiplied" not in df:
        return None
    return _float_col(df, "rlnCtfDataAreCtfPremultiplied", path, "") > 0


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


def _end_dose(pre_exposure: np.ndarray) -> np.ndarray:
    """Cumulative dose at the end of each tilt from pre-exposures (start): + the step to the next tilt's start."""
    order = np.argsort(pre_exposure, kind="stable")
    s = pre_exposure[order]
    steps = np.diff(s)
    own = np.append(steps, steps[-1] if len(steps) else 0.0)
    out = np.empty_like(pre_exposure)
    out[order] = s + own
    return out


def _stack_shape(path: str) -> tuple[int, int, int, int]:
    """(nx, ny, nz, ispg) of an MRC file from its header, checked against the file size (see ``read_mrc_header``)."""
    h = read_mrc_header(path)
    return h.nx, h.ny, h.nz, h.ispg


_NO_3D = (
    "RELION 4/5 3-D pseudo-subtomograms are not supported (re-extract the particles as 2-D stacks with one STAR row "
    "per tilt image, e.g. a Warp/M image-series export)"
)


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
