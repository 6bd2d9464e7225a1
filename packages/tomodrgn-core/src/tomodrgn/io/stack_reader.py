"""Reading tilt images from MRC stacks: memory maps opened on demand, one least-recently-used cache per process.

The cache is not part of any :class:`~tomodrgn.io.particle_series.ParticleSeries` (a particle set is data only: it
pickles to DataLoader workers without memory maps, and subsets share nothing mutable); a process opens a stack once,
whatever series refers to it. A stack is known by its path, inode, size and modification time, so a file rewritten
at the same path is opened again. The pages of each image read are released (with the kernel's fault-around block
that holds them), so iterating a dataset larger than RAM keeps the resident memory bounded.
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict

import numpy as np

from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import MrcError, mmap_mrc

MAX_OPEN_STACKS = 64  # memory maps kept open at once (least recently used are closed)
#: the kernel maps up to this many bytes around a faulting page that are already in the page cache ("fault-around",
#: Linux's default ``fault_around_bytes``, aligned to it): released with the image, or pages of neighbouring images
#: read earlier would be mapped again and stay resident (RSS grew by up to 90 MB for a 210 MB stack without it)
FAULT_AROUND_BYTES = 65536


class StackReader:
    """An LRU cache of open stack memory maps (at most ``max_open``)."""

    def __init__(self, max_open: int = MAX_OPEN_STACKS) -> None:
        self.max_open = max_open
        self._maps: OrderedDict = OrderedDict()

    def stack(self, path: str) -> np.ndarray:
        """The memory-mapped stack (n, D, D) at ``path`` (opened again when the file changed)."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise InputError(f"cannot read image stack {path}: {e.strerror}") from e
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        try:
            data = mmap_mrc(path)
        except MrcError as e:
            raise InputError(str(e)) from e
        self._maps[key] = data
        while len(self._maps) > self.max_open:
            self._maps.popitem(last=False)
        return data

    def open_paths(self) -> list[str]:
        return [key[0] for key in self._maps]

    def clear(self) -> None:
        self._maps.clear()

    def read(self, stack_path: np.ndarray, stack_index: np.ndarray, rows: np.ndarray, box: int, describe) -> np.ndarray:
        """Images of ``rows`` (stack file ``stack_path[row]``, 0-based index ``stack_index[row]``) as float32
        (len(rows), box, box); NaN/inf pixels raise InputError with ``describe(row)`` naming the particle."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), box, box), dtype=np.float32)
        opened: dict[str, np.ndarray] = {}  # one look (stat) per stack per call, not per image
        for k, row in enumerate(rows):
            path = stack_path[row]
            stack = opened.get(path)
            if stack is None:
                stack = opened[path] = self.stack(path)
            index = int(stack_index[row])
            out[k] = stack[index]
            release_pages(stack, index)
            if not np.isfinite(out[k]).all():
                raise InputError(f"{describe(row)}: image {index + 1}@{path} (row {row}) has NaN or inf pixels")
        return out


#: this process's reader (DataLoader workers each have their own)
READER = StackReader()


def release_pages(stack: np.ndarray, index: int) -> None:
    """Drop the pages of image ``index`` from this process's resident set, with the fault-around blocks that hold
    them (read-only file mapping: always safe; a page dropped that is needed again is read back)."""
    mm = getattr(stack, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        base = stack.offset - stack.offset % mmap.ALLOCATIONGRANULARITY
        start = stack.offset - base + index * stack[0].nbytes
        end = start + stack[0].nbytes
        block = max(mmap.PAGESIZE, FAULT_AROUND_BYTES)
        start_aligned = start - start % block
        end_aligned = min(len(mm), -(-end // block) * block)
        if end_aligned > start_aligned:
            mm.madvise(mmap.MADV_DONTNEED, start_aligned, end_aligned - start_aligned)
    except (AttributeError, ValueError, OSError):
        pass
