"""Python's cyclic garbage collector, kept on the GUI thread while the plugin's workers run.

The collector runs in whichever thread crosses its allocation threshold. While a worker decodes or trains, that is
mostly the worker, and cyclic garbage that holds Qt or vispy objects (closed viewers, removed layers) is then freed
off the GUI thread, which Qt and OpenGL do not allow (napari/napari#1029). One full test run hung in a way that fits
this (not reproduced in six reruns): a worker decoding a volume stood still in C code with no Python frame of its own
inside the decoder, while the GUI thread waited in its event loop. So while any worker runs, automatic collection is
off and a GUI-thread timer collects instead (the young generation twice a second, the older ones every 5 s and every
minute); the first worker starts with a full collection, and the last one to finish hands the collector back as it
found it.
"""

from __future__ import annotations

import gc
from typing import Any

INTERVAL_MS = 500
_state: dict[str, Any] = {"workers": 0, "timer": None, "was_enabled": True, "ticks": 0}


def _collect() -> None:
    _state["ticks"] += 1
    ticks = _state["ticks"]
    gc.collect(2 if ticks % 120 == 0 else 1 if ticks % 10 == 0 else 0)


def hold() -> None:
    """A worker is about to start (call in the GUI thread)."""
    if _state["workers"] == 0:
        from qtpy.QtCore import QTimer

        gc.collect()  # today's garbage is freed here, in the GUI thread
        _state["was_enabled"] = gc.isenabled()
        gc.disable()
        timer = QTimer()
        timer.setInterval(INTERVAL_MS)
        timer.timeout.connect(_collect)
        timer.start()
        _state["timer"] = timer
    _state["workers"] += 1


def release() -> None:
    """A worker has finished (its ``finished`` signal, in the GUI thread)."""
    if _state["workers"] == 0:
        return
    _state["workers"] -= 1
    if _state["workers"] == 0:
        _state["timer"].stop()
        _state["timer"] = None
        if _state["was_enabled"]:
            gc.enable()
        gc.collect()


def workers_holding() -> int:
    """How many workers hold the collector (for tests and diagnostics)."""
    return int(_state["workers"])
