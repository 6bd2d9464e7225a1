"""Mixed precision (``--amp``): the model's forward pass under bf16 autocast; everything that accumulates stays fp32.

bf16 autocast runs the encoder's and decoder's matrix products in bfloat16 on CUDA and on CPUs with native bf16
(``avx512_bf16`` or ``amx_bf16``; elsewhere bf16 is slower than fp32, so ``--amp`` trains in fp32 there and says so
once). The decoded Hartley values, μ and log σ² are cast back to fp32 before the CTF, the loss and the KL term; the
weights, gradients and optimiser state are fp32 throughout (autocast never changes them).
"""

from __future__ import annotations

import functools
import warnings

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """This CPU has native bf16 arithmetic (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def amp_enabled(amp: bool, device: torch.device) -> bool:
    """Whether ``--amp`` runs bf16 autocast on ``device``: CUDA, or a CPU with native bf16 (:func:`cpu_has_bf16`)."""
    if not amp:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def amp_note(amp: bool, device: torch.device) -> str | None:
    """One line for the log when ``--amp`` is asked for but trains in fp32 here (None otherwise)."""
    if amp and not amp_enabled(amp, device):
        return f"--amp: no native bf16 on this {device.type} (avx512_bf16 / amx_bf16): training in fp32"
    return None


def warn_if_fp32(amp: bool, device: torch.device) -> None:
    note = amp_note(amp, device)
    if note is not None:
        warnings.warn(note, stacklevel=3)
