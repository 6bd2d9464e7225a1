"""Mixed precision, on by default where it is native: the model's forward pass under bf16 autocast on CUDA and on CPUs
with native bf16 arithmetic; everything that accumulates stays fp32. ``--no-amp`` trains in fp32 everywhere.

Elsewhere (a CPU without ``avx512_bf16`` / ``amx_bf16``, where bf16 matrix products ran 2.4× slower than fp32) the
networks run in fp32 with no message; the training log says which precision a run had (:func:`precision_note`).
The decoded Hartley values, μ and log σ² are cast back to fp32 before the CTF, the loss and the KL term; the weights,
gradients and optimiser state are fp32 throughout (autocast never changes them). Accuracy and speed against fp32:
docs/benchmarks.md, "Mixed precision".
"""

from __future__ import annotations

import functools

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
    """Whether ``amp`` (``--amp``, the default) runs bf16 autocast on ``device``: CUDA, or a CPU with native bf16."""
    if not amp:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def precision_note(amp: bool, device: torch.device) -> str:
    """One line for the training log: the precision the networks run in on ``device``, and why."""
    if amp_enabled(amp, device):
        return f"precision: bf16 autocast of the networks on {device.type} (native bf16), loss and weights fp32"
    if not amp:
        return "precision: fp32 (--no-amp)"
    return f"precision: fp32 (no native bf16 on this {device.type})"
