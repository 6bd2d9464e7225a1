"""Make torch safe to use inside a napari process (call in the main thread before training or decoding).

Triton bundles its own LLVM. When napari renders with Mesa (llvmpipe software OpenGL: headless machines, Xvfb,
remote X), Mesa's ``libLLVM`` is already loaded, and importing triton afterwards crashes the process (segmentation
fault; torch imports triton lazily, e.g. when an optimiser is created). In that case triton is blocked for this
process (torch then runs without it and the core's ``auto`` lattice backend uses the torch kernels); otherwise it is
imported here, in the main thread.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_message: str | None = None


def mesa_llvm_loaded() -> bool:
    """True when a ``libLLVM`` shared library is mapped into this process (Linux; False elsewhere)."""
    maps = Path("/proc/self/maps")
    try:
        return "libLLVM" in maps.read_text()
    except OSError:
        return False


def prepare_torch() -> str | None:
    """Import torch's optional triton safely; returns a message when triton had to be disabled, else None."""
    global _message
    if "triton" in sys.modules:
        return _message
    if importlib.util.find_spec("triton") is None:
        return None
    if mesa_llvm_loaded():
        sys.modules["triton"] = None  # type: ignore[assignment]  # makes `import triton` raise ImportError
        _message = "triton disabled in this napari session (Mesa OpenGL's LLVM is loaded); using torch kernels"
        return _message
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    return None
