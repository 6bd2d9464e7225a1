"""A fixed glibc mmap threshold, so that freed large buffers leave the resident set (Linux with glibc).

glibc serves a block above its mmap threshold with a mapping of its own, unmapped when the block is freed; below the
threshold, from the heap, where a freed block stays resident while anything above it is still in use. The
threshold starts at 128 KiB and rises, each time a mapped block is freed, to that block's size (up to 32 MiB). A
loop whose buffers are a few MB to 32 MB and which keeps small objects between them can then grow the heap batch
after batch. Measured at 20,000 particles, D = 64, 41 tilts (docs/benchmarks.md): the all-tilt encoder pass after
training, 34 particles a batch (images of 24 MB), took the resident set from 3.5 GB to 11.6 GB, and the same pass
through ``TrainedModel.embed`` to 8.4 GB; with the threshold fixed at 4 MiB (``mallopt(M_MMAP_THRESHOLD)``, which also
stops its rise) it stayed at 1.3 GB and was no slower.

:func:`fix_mmap_threshold` is called by the ``tomodrgn`` command, by training and by
:func:`~tomodrgn.training.load_model`; it changes nothing but where glibc puts blocks of 4 MiB and more, for the whole
process. :func:`trim_heap` (``malloc_trim``) gives the free memory inside the heaps back to the system, so that the
resident set counts only memory in use: ``--batch-size auto`` measures its trial steps from there
(runtime/batch_size.py).
"""

from __future__ import annotations

import ctypes
import platform
import sys

MMAP_THRESHOLD = 4 << 20  # bytes: blocks this large or larger get their own mapping
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
_applied: int | None = None


def _glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc on Linux (for ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` for this process; False where the C library is not glibc or mallopt
    refuses. Calling it again with the same value does nothing."""
    global _applied
    if _applied == nbytes:
        return True
    libc = _glibc()
    if libc is None:
        return False
    try:
        ok = libc.mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1
    except AttributeError:
        return False
    if ok:
        _applied = nbytes
    return ok


def threshold_note() -> str:
    """One line for the training log: the mmap threshold this process runs with."""
    if _applied is None:
        return "mmap threshold: glibc's own (rises to 32 MiB)"
    return f"mmap threshold: fixed at {_applied / 2**20:g} MiB (freed large buffers leave the resident set)"


def trim_heap() -> bool:
    """Give the free memory inside glibc's heaps back to the system (``malloc_trim(0)``: the free pages of every
    arena, holes included), so that the resident set is the memory in use; False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
    except AttributeError:
        return False
    return True
