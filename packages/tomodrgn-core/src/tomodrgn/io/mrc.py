"""MRC volumes and image stacks (mrcfile). Stacks are memory-mapped so datasets larger than RAM can be read."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

from tomodrgn.io.errors import InputError


class MrcError(InputError):
    """An MRC file that cannot be read as required; the message names the file."""


def write_mrc(path: str | Path, data: np.ndarray, pixel_size: float = 1.0, is_stack: bool | None = None) -> Path:
    """Write a volume (Z, Y, X) or image stack (N, Y, X) as float32 with voxel size ``pixel_size`` Å.

    ``is_stack`` defaults to True for ``.mrcs`` files. The header origin is 0 (the box corner), as RELION writes.
    Written to a temporary name and renamed, so an interrupted write never leaves a half file.
    """
    path = Path(path)
    if is_stack is None:
        is_stack = path.suffix == ".mrcs"
    tmp = path.with_name(path.name + ".tmp")
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        if is_stack:
            mrc.set_image_stack()
        mrc.voxel_size = pixel_size
    tmp.replace(path)
    return path


def read_mrc(path: str | Path) -> tuple[np.ndarray, float]:
    """Read a whole MRC file into memory: (data float32, pixel size Å)."""
    try:
        with mrcfile.open(path, permissive=False) as mrc:
            return np.asarray(mrc.data, dtype=np.float32).copy(), float(mrc.voxel_size.x)
    except (ValueError, OSError) as e:
        raise MrcError(f"cannot read MRC file {path}: {e}") from e


def mmap_mrc(path: str | Path) -> np.ndarray:
    """Memory-map an MRC stack read-only; returns an array (N, Y, X) (a single 2-D image becomes (1, Y, X))."""
    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=False)
    except (ValueError, OSError) as e:
        raise MrcError(f"cannot read MRC header of {path}: {e}") from e
    data = mrc.data
    if data is None:
        raise MrcError(f"cannot read MRC header of {path}: no data block")
    if data.ndim == 2:
        data = data[None]
    return data


def mrc_pixel_size(path: str | Path) -> float:
    """Voxel size (Å) from an MRC header (header only)."""
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            return float(mrc.voxel_size.x)
    except (ValueError, OSError) as e:
        raise MrcError(f"cannot read MRC header of {path}: {e}") from e
