"""``--batch-size auto``: the largest batch whose training step fits a memory limit, measured with trial steps; and
the one-line message for a step that runs out of memory.

The limit is the whole process's memory: on CUDA what the caching allocator reserves on the device (default: the
device's free memory plus what this process already holds), on CPU the resident set (default: what is resident now
plus the system's available memory; ``--memory-limit`` in GiB, e.g. a cluster job's limit). Trial steps
(forward + backward, no optimiser step, on the run's own first particles; random states put back) measure the peak
at 1 particle and at a few; the peak grows linearly with the batch, so the fit gives the largest batch under
:data:`MARGIN` × the limit, which a trial confirms (or shrinks, refitting). No trial is more than
:data:`MAX_GROWTH` × the largest batch that fitted, so a slope measured too low cannot send a trial far over the
limit. The optimiser's two moment buffers and the weight average, allocated later, are added as three copies of the
parameters. CPU peaks are the kernel's high-water mark of the resident set (``VmHWM``, reset through
``/proc/self/clear_refs``: Linux), each from a trimmed heap (``malloc_trim``): free memory left resident in the heap
by earlier work (a long Python session, napari, a test run) would otherwise absorb the small trials and hide their
growth. Measured with ~80 MB of such holes (D = 24, 11 tilts): the trials at 1 and 4 particles peaked the same, the
fit sent the next trial to all 48 particles, and the process went 226 MiB over the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tomodrgn.io.errors import InputError
from tomodrgn.runtime.mmap_threshold import trim_heap

MARGIN = 0.85  # the chosen batch's measured peak stays under this fraction of the limit
MAX_GROWTH = 4  # a trial's batch is at most this many times the largest batch that fitted
AUTO_MAX_BATCH = 256  # particles per process: larger batches add few steps per epoch and slow convergence
GIB = 2**30


@dataclass
class BatchChoice:
    """The batch ``--batch-size auto`` chose: ``local`` particles per process, the ``limit`` and the ``trials``
    ((local batch, peak bytes) measured) behind it, on ``device``; ``capped``: the cap, not memory, decided."""

    local: int
    limit: int
    device: str
    trials: list[tuple[int, int]] = field(default_factory=list)
    capped: bool = False

    def line(self, world_size: int = 1) -> str:
        peaks = ", ".join(f"{b}: {p / GIB:.2f}" for b, p in self.trials)
        why = f"the cap of {AUTO_MAX_BATCH} per process" if self.capped else f"{MARGIN:.0%} of the limit"
        return (
            f"batch size auto: {self.local * world_size} ({self.local} per process; {why}; limit "
            f"{self.limit / GIB:.2f} GiB on {self.device}; trial peaks GiB by batch {peaks})"
        )


def _linux_rss_peak_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def process_peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Peak memory (bytes) of this process while ``fn()`` runs: the CUDA allocator's reserved bytes on a CUDA
    ``device``, else the resident set's high-water mark (Linux), from a trimmed heap."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_reserved(device))
    trim_heap()  # free heap memory left resident would absorb the trial's growth
    _linux_rss_peak_reset()
    fn()
    return _status_kib("VmHWM") * 1024


def memory_limit(device: torch.device, limit_gib: float | None) -> int:
    """The limit in bytes: ``limit_gib``, or what this process may use on ``device`` now (see the module doc)."""
    if limit_gib is not None:
        return int(limit_gib * GIB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device))
    return (_status_kib("VmRSS") + _meminfo_kib("MemAvailable")) * 1024


def _check_measurable(device: torch.device) -> None:
    if device.type == "cuda":
        return
    if device.type != "cpu" or not Path("/proc/self/clear_refs").exists():
        raise InputError(
            f"--batch-size auto measures memory on CUDA, or on CPU under Linux; on {device.type} give a number"
        )


def choose_batch_size(
    trial: Callable[[int], None],
    device: torch.device,
    n_local: int,
    state_bytes: int,
    limit_gib: float | None = None,
    what: str = "",
) -> BatchChoice:
    """The largest local batch (≤ ``n_local`` particles of this process, ≤ :data:`AUTO_MAX_BATCH`) whose peak, from
    ``trial(b)`` (one forward + backward at batch b) plus ``state_bytes`` allocated later, stays under
    :data:`MARGIN` × the limit. Raises :class:`InputError` when even one particle does not fit (``what``: the run's
    box and tilts, for the message)."""
    _check_measurable(device)
    limit = memory_limit(device, limit_gib)
    budget = MARGIN * limit
    cap = max(1, min(n_local, AUTO_MAX_BATCH))
    trials: list[tuple[int, int]] = []

    def peak(b: int) -> int:
        try:
            p = process_peak_memory(lambda: trial(b), device) + state_bytes
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            p = limit + 1  # did not fit at all
        trials.append((b, p))
        return p

    p1 = peak(1)
    if p1 > budget:
        raise InputError(
            f"--batch-size auto: one particle per batch needs {p1 / GIB:.2f} GiB{what}, over {MARGIN:.0%} of the "
            f"memory limit {limit / GIB:.2f} GiB on {device}: try --amp, fewer --n-tilts, a smaller --box-size or "
            "decoder, or a larger --memory-limit"
        )
    if cap == 1:
        return BatchChoice(1, limit, str(device), trials, capped=True)
    b2 = min(4, cap)
    p2 = peak(b2)
    choice, over = (b2, cap + 1) if p2 <= budget else (1, b2)  # largest batch that fitted, smallest that did not
    for _ in range(6):  # fit the slope, try the batch it allows (at most MAX_GROWTH × choice); shrink while over
        last_b, last_p = trials[-1]  # the slope from (1, p1) to the latest trial (its batch ≥ 2)
        per = max((last_p - p1) / (last_b - 1), 1.0)
        guess = int(min(cap, over - 1, MAX_GROWTH * choice, max(1, 1 + (budget - p1) / per)))
        if guess <= choice:
            break
        p = peak(guess)
        if p <= budget:
            choice = guess
        else:
            over = guess
    return BatchChoice(choice, limit, str(device), trials, capped=choice == cap)


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device or host allocation failure (CUDA out of memory; the CPU allocator's "can't allocate
    memory", e.g. under a job's address-space limit)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")
    )


def out_of_memory_message(device: torch.device, batch: int, world_size: int, box: int, n_tilts: int) -> str:
    """One line for a training step that ran out of memory: which batch and box failed, and what to try."""
    where = "GPU" if device.type == "cuda" else "host"
    smaller = max(world_size, batch // 2 // world_size * world_size)
    return (
        f"out of {where} memory on {device} in a training step at --batch-size {batch} ({batch // world_size} per "
        f"process), box {box}, {n_tilts} tilts per particle: try --batch-size {smaller}, --batch-size auto, --amp, "
        "or fewer --n-tilts"
    )
