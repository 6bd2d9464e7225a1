"""While a plugin worker runs, Python's cyclic collector runs only on the GUI thread (napari/napari#1029)."""

from __future__ import annotations

import gc
import threading

import pytest
from magicgui.widgets import Container, Label

from napari_tomodrgn import _gc_guard
from napari_tomodrgn._async import init_async, run_in_thread

pytestmark = pytest.mark.gui
MAIN = threading.main_thread().ident


def test_collections_happen_on_the_gui_thread_while_a_worker_runs(qtbot):
    widget = Container()
    widget.status = Label()
    init_async(widget)
    started = threading.Event()

    def make_cycles() -> int:  # what a decoding worker does to the allocator, with reference cycles in it
        started.set()
        for _ in range(300_000):
            a: list = []
            a.append(a)
        return 1

    threads: list[tuple[int, int]] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            threads.append((threading.get_ident(), info["generation"]))

    result = []
    enabled_before = gc.isenabled()
    gc.callbacks.append(record)
    try:
        run_in_thread(widget, make_cycles, done=result.append, what="cycles")
        assert _gc_guard.workers_holding() == 1 and not gc.isenabled()
        qtbot.waitUntil(lambda: bool(result) and not widget.workers, timeout=60_000)
        qtbot.waitUntil(lambda: _gc_guard.workers_holding() == 0, timeout=10_000)
    finally:
        gc.callbacks.remove(record)
    assert started.is_set() and result == [1]
    assert MAIN not in widget.worker_threads
    # 300,000 self-referencing lists: the default collector would have run hundreds of times in the worker
    assert threads and {t for t, _ in threads} == {MAIN}, {t for t, _ in threads}
    assert gc.isenabled() == enabled_before  # handed back as found
