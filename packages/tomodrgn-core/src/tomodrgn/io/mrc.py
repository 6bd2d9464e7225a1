"""MRC volumes and image stacks. Stacks are memory-mapped so datasets larger than RAM can be read.

Every reader goes through :func:`read_mrc_header`, the one place where headers are parsed and checked. Legacy headers
(Warp 1.x, cryoDRGN, the published tomoDRGN: no ``MAP`` id string at bytes 208–211 and/or a zero machine stamp at
bytes 212–215, otherwise valid) are read as little-endian with one :class:`LegacyMrcHeaderWarning` per file.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.dtypes
import mrcfile.utils
import numpy as np

from tomodrgn.io.errors import InputError

HEADER_BYTES = 1024
_warned_legacy: set[tuple[str, int, int]] = set()  # (resolved path, size, mtime) of files already warned about


class MrcError(InputError):
    """An MRC file that cannot be read as required; the message names the file."""


class LegacyMrcHeaderWarning(UserWarning):
    """An MRC header without the ``MAP`` id string or machine stamp (older writers); read as little-endian."""


@dataclass(frozen=True)
class MrcHeader:
    """The parts of an MRC header tomoDRGN uses. ``pixel_size`` Å (0.0 when the header has none); ``legacy``: no
    ``MAP`` id string or no valid machine stamp; ``byte_order`` "<" or ">"; ``data_offset`` bytes (1024 + nsymbt)."""

    nx: int
    ny: int
    nz: int
    mode: int
    ispg: int
    pixel_size: float
    legacy: bool
    byte_order: str = "<"
    data_offset: int = HEADER_BYTES

    @property
    def dtype(self) -> np.dtype:
        """Voxel dtype of the data block, in the file's byte order."""
        return mrcfile.utils.dtype_from_mode(self.mode).newbyteorder(self.byte_order)

    @property
    def data_bytes(self) -> int:
        return self.nx * self.ny * self.nz * self.dtype.itemsize


def _parse(raw: bytes, order: str) -> np.record:
    dtype = mrcfile.dtypes.HEADER_DTYPE.newbyteorder(order)
    return np.frombuffer(raw, dtype=dtype)[0]


def _valid_mode(h: np.record) -> bool:
    try:
        mrcfile.utils.dtype_from_mode(int(h["mode"]))
    except ValueError:
        return False
    return True


def read_mrc_header(path: str | Path) -> MrcHeader:
    """Read and check the header of an MRC file (the one header reader of tomoDRGN).

    Raises :class:`MrcError` (naming the file) for a file shorter than a header, an unsupported mode, non-positive
    dimensions or a negative extended-header size, and a file smaller than its header says (for a legacy header: any
    size other than exactly 1024 + nsymbt + nx·ny·nz·bytes per voxel, the only sign that it is an MRC file).
    A legacy header gives one :class:`LegacyMrcHeaderWarning` per file and process.
    """
    path = Path(path)

    def fail(why: str) -> MrcError:
        return MrcError(f"cannot read MRC header of {path}: {why}")

    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
        stat = os.stat(path)
    except IsADirectoryError as e:
        raise fail("it is a folder") from e
    if len(raw) < HEADER_BYTES:
        raise fail(f"file is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header")
    has_id = raw[208:211] == b"MAP"  # MRC2014 asks readers to check the first three bytes only
    try:
        order = mrcfile.utils.byte_order_from_machine_stamp(raw[212:216])
        has_stamp = True
    except ValueError:
        order, has_stamp = "<", False
    h = _parse(raw, order)
    if not has_stamp and not _valid_mode(h):  # a big-endian file without a stamp
        other = _parse(raw, ">")
        if _valid_mode(other):
            h, order = other, ">"
    legacy = not (has_id and has_stamp)
    mode, nsymbt = int(h["mode"]), int(h["nsymbt"])
    nx, ny, nz = int(h["nx"]), int(h["ny"]), int(h["nz"])
    if not _valid_mode(h):
        raise fail(f"unsupported data mode {mode} (expected 0, 1, 2, 4, 6 or 12)")
    if min(nx, ny, nz) <= 0:
        raise fail(f"dimensions {nx}×{ny}×{nz} must be positive")
    if nsymbt < 0:
        raise fail(f"negative extended header size {nsymbt}")
    mx, cella_x = int(h["mx"]), float(h["cella"]["x"])
    pixel_size = cella_x / mx if mx > 0 and math.isfinite(cella_x) and cella_x > 0 else 0.0
    header = MrcHeader(nx, ny, nz, mode, int(h["ispg"]), pixel_size, legacy, order, HEADER_BYTES + nsymbt)
    expected = header.data_offset + header.data_bytes
    if stat.st_size < expected or (legacy and stat.st_size != expected):
        raise fail(f"file is {stat.st_size} bytes but its header ({nx}×{ny}×{nz}, mode {mode}) says {expected}")
    if legacy:
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _warned_legacy:
            _warned_legacy.add(key)
            missing = " and ".join(
                w for w, ok in (("the 'MAP ' id string", has_id), ("a machine stamp", has_stamp)) if not ok
            )
            endian = "little" if order == "<" else "big"
            warnings.warn(
                f"{path}: legacy MRC header without {missing} (older Warp, cryoDRGN or tomoDRGN); read as "
                f"{endian}-endian {nx}×{ny}×{nz}, mode {mode}",
                LegacyMrcHeaderWarning,
                stacklevel=2,
            )
    return header


#: what :func:`write_mrc` writes: MRC mode 2 (float32) and mode 12 (float16, as RELION writes with ``--float16``)
WRITE_DTYPES = {"float32": np.float32, "float16": np.float16}


def write_mrc(
    path: str | Path, data: np.ndarray, pixel_size: float = 1.0, is_stack: bool | None = None, dtype: str = "float32"
) -> Path:
    """Write a volume (Z, Y, X) or image stack (N, Y, X) with voxel size ``pixel_size`` Å.

    ``dtype`` "float32" (MRC mode 2) or "float16" (mode 12: half the disk; values must lie within ±65504).
    ``is_stack`` defaults to True for ``.mrcs`` files. The header origin is 0 (the box corner), as RELION writes.
    Written to a temporary name and renamed, so an interrupted write never leaves a half file.
    """
    path = Path(path)
    if dtype not in WRITE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(WRITE_DTYPES)}, got {dtype!r}")
    if is_stack is None:
        is_stack = path.suffix == ".mrcs"
    with np.errstate(over="ignore"):  # an overflow to float16 is named below
        out = np.ascontiguousarray(data, dtype=WRITE_DTYPES[dtype])
    if dtype == "float16" and not np.isfinite(out).all() and np.isfinite(data).all():
        raise ValueError(f"{path}: values beyond float16's range (±65504); write it as float32")
    tmp = path.with_name(path.name + ".tmp")
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(out)
        if is_stack:
            mrc.set_image_stack()
        mrc.voxel_size = pixel_size
    tmp.replace(path)
    return path


def _memmap(path: Path, header: MrcHeader) -> np.memmap:
    try:
        return np.memmap(
            path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=(header.nz, header.ny, header.nx)
        )
    except (ValueError, OSError) as e:
        raise MrcError(f"cannot memory-map MRC file {path}: {e}") from e


def read_mrc(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a whole MRC file into memory: (data float32, pixel size Å; 0.0 when the header has none).

    Volumes come back (Z, Y, X); a single image of an image stack (space group 0, nz = 1) comes back (Y, X).
    """
    path = Path(path)
    header = read_mrc_header(path)
    data = np.array(_memmap(path, header), dtype=np.float32)
    if header.ispg == 0 and header.nz == 1:
        data = data[0]
    return data, header.pixel_size


def mmap_mrc(path: str | Path) -> np.ndarray:
    """Memory-map an MRC stack read-only; returns an array (N, Y, X) (a single 2-D image becomes (1, Y, X))."""
    path = Path(path)
    return _memmap(path, read_mrc_header(path))


def mrc_pixel_size(path: str | Path) -> float:
    """Voxel size (Å) from an MRC header (header only; 0.0 when the header has none)."""
    return read_mrc_header(path).pixel_size
