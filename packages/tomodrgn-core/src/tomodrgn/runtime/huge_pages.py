"""Transparent huge pages for the large buffers of a training step (Linux with glibc), for the training commands.

A training step allocates its activations afresh (hundreds of MB at D = 64: points × hidden width × layers), and
glibc maps every block above 32 MB with a new ``mmap`` and unmaps it when freed. Each step therefore faults in and
zeroes every 4 KiB page of those buffers again. Measured at D = 64, 41 tilts, batch 8, 11 tilts per particle, one
thread (docs/benchmarks.md): 310,000–360,000 minor page faults per step (≈ 1.3 GB mapped anew). With glibc's
tunable ``glibc.malloc.hugetlb=1`` malloc asks for transparent huge pages (``madvise``) on those mappings: the same
steps took 6,000–10,000 faults each, with the same peak memory (1,261–1,297 MiB) and a 7 % shorter median step.
Keeping freed blocks in the heap instead (``mallopt(M_MMAP_MAX, 0)``) brought faults to ~60 per step but raised the
peak by half (1,916 MiB), so it is not used.

Re-measured with bf16 autocast on by default (docs/benchmarks.md, "Training throughput"): one core, D = 64, the
default reference-frame encoder, ``nox -s bench``'s data, bf16: 2.89–3.02 particles/s with huge pages (median 2.90,
4 runs) against 2.47–2.90 without (median 2.71, 5 runs), +7 %; in fp32 no gain (1.41–1.57 against 1.52–1.58).
glibc reads its tunables once, at process start, so ``tomodrgn train_vae`` / ``train_nn`` / ``demo`` start
themselves again with the tunable added to ``GLIBC_TUNABLES`` (:func:`restart_with_huge_pages`; the other commands
do not pay the ~70 ms of a restart); ``TOMODRGN_HUGE_PAGES=0`` turns this off. Elsewhere (other C libraries, or a
Python session that was started without it) nothing changes but the page faults.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping

TUNABLE = "glibc.malloc.hugetlb=1"
SWITCH = "TOMODRGN_HUGE_PAGES"
# set in the restarted process so that it never restarts again (the loader drops GLIBC_TUNABLES in secure-exec mode)
RESTARTED = "TOMODRGN_HUGE_PAGES_RESTARTED"


def _hugetlb(environ: Mapping[str, str]) -> str | None:
    """The ``glibc.malloc.hugetlb=…`` entry of ``GLIBC_TUNABLES`` in ``environ``, or None."""
    found = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t.startswith("glibc.malloc.hugetlb=")]
    return found[-1] if found else None


def huge_pages_on(environ: Mapping[str, str]) -> bool:
    """True when ``environ`` (the process's environment at start) asks glibc for huge pages on large buffers (the
    tunable at 1, transparent huge pages, or 2, HugeTLB pages)."""
    return _hugetlb(environ) not in (None, "glibc.malloc.hugetlb=0")


def huge_page_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to restart the command with so that glibc uses huge pages, or None where there is nothing to
    do: not Linux with glibc, a ``glibc.malloc.hugetlb`` value already chosen, ``TOMODRGN_HUGE_PAGES=0``, or this
    process is itself the restart."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    if environ.get(SWITCH, "1") == "0" or RESTARTED in environ or _hugetlb(environ) is not None:
        return None
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    return {**environ, "GLIBC_TUNABLES": ":".join([*tunables, TUNABLE]), RESTARTED: "1"}


def restart_with_huge_pages(argv: list[str]) -> None:
    """Replace this process by ``python ARGV`` (same interpreter, its -W / -X options, same PID) with huge pages on,
    where :func:`huge_page_environment` says that is needed; otherwise, or if the restart fails, run on as is."""
    env = huge_page_environment(os.environ)
    if env is not None and sys.executable:
        flags = subprocess._args_from_interpreter_flags()  # what multiprocessing passes on to its children
        try:
            os.execve(sys.executable, [sys.executable, *flags, *argv], env)
        except OSError:
            pass  # only the page faults differ


def allocator_note(environ: Mapping[str, str]) -> str:
    """One line for the training log: whether this process was started with huge pages for large buffers."""
    if huge_pages_on(environ):
        return f"allocator: huge pages for large buffers ({_hugetlb(environ)})"
    return f"allocator: 4 KiB pages (start through the tomodrgn command, or set GLIBC_TUNABLES={TUNABLE})"
