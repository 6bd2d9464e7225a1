"""Widget plumbing shared by the docks: slow calls in a napari thread worker with a busy bar; errors as messages.

Every slow call (UMAP/PCA, loading a run, decoding, placing volumes) goes through :func:`run_in_thread`: the call runs
in a ``napari.qt.threading`` worker, the widget's busy bar (an indeterminate progress bar) shows while any worker of
the widget runs, and the result is handed to ``done`` in the main thread. Errors go to :func:`report_error`: one line
in the widget's status label and a napari notification (user errors through ``tomodrgn.api.user_error_message``).
Warnings the call raises are one line each (``tomodrgn.api.warnings_to``): added to the status line when it ends
(:func:`show_warnings`) and shown as napari warnings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import ProgressBar

from napari_tomodrgn._torch_setup import prepare_torch


def busy_bar() -> ProgressBar:
    """An indeterminate (busy) progress bar, hidden until a worker runs."""
    bar = ProgressBar(label="busy", min=0, max=1, value=0, visible=False)
    bar.native.setRange(0, 0)  # Qt: range 0..0 = busy animation
    return bar


def error_text(exc: BaseException | str) -> str:
    """One non-empty line for an error: the user-error message of the core, else ``Type: message``."""
    if isinstance(exc, str):
        return exc or "unknown error"
    from tomodrgn.api import user_error_message

    msg = user_error_message(exc)
    if msg is not None and isinstance(exc, OSError) and not getattr(exc, "filename", None) and str(exc):
        msg = " ".join(str(exc).split())  # e.g. FileNotFoundError("no weights.*.pt checkpoint in …")
    if msg is None:
        text = " ".join(str(exc).split())
        msg = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return msg


def report_error(widget: Any, exc: BaseException | str, context: str = "") -> str:
    """Show an error in ``widget.status`` and as a napari notification; returns the line shown."""
    from napari.utils.notifications import show_error

    text = error_text(exc)
    if isinstance(exc, BaseException):
        from tomodrgn.api import user_error_message

        if user_error_message(exc) is None:  # a bug, not the user's input: keep the traceback in the log
            logging.getLogger("napari_tomodrgn").error("%s", text, exc_info=exc)
    if context:
        text = f"{context}: {text}"
    widget.status.value = f"error: {text}"
    show_error(text)
    return text


def field_path(field: Any, what: str) -> Path:
    """The path in a FileEdit; raises ``InputError`` naming ``what`` if the field is empty (magicgui reads '' as .)."""
    from tomodrgn.api import InputError

    text = str(field.line_edit.value).strip()
    if not text:
        raise InputError(f"choose {what} first (the field is empty)")
    return Path(text).expanduser()


def run_in_thread(
    widget: Any,
    fn: Callable,
    *args: Any,
    done: Callable[[Any], None],
    what: str,
    progress: ProgressBar | None = None,
    **kwargs: Any,
):
    """Run ``fn(*args, **kwargs)`` in a thread worker; ``done(result)`` runs in the main thread. Returns the worker.

    While it runs: ``widget.busy`` (a :func:`busy_bar`) is shown and ``widget.status`` says ``what``; the ids of the
    threads the calls ran in are appended to ``widget.worker_threads`` (tests check the work ran off the main thread).
    With ``progress`` (a determinate bar), ``fn`` is also given ``progress=callback(done, total)``, callable from the
    worker: the bar is updated in the main thread (a queued Qt signal) and shown while the call runs.
    """
    from napari.qt.threading import create_worker

    prepare_torch()  # main thread: never let torch import triton inside a worker after Mesa OpenGL is loaded

    from tomodrgn.api import warnings_to

    lines: list[str] = []

    def call() -> Any:
        widget.worker_threads.append(threading.get_ident())
        with warnings_to(lines.append):
            return fn(*args, **kwargs)

    if progress is not None:
        kwargs["progress"] = _progress_relay(widget, progress)
    worker = create_worker(call, _start_thread=False, _ignore_errors=True)  # errors → report_error
    widget.workers.append(worker)
    worker.returned.connect(done)
    worker.errored.connect(lambda e: report_error(widget, e, what.rstrip("…. ")))
    worker.finished.connect(lambda: _finished(widget, worker))
    worker.finished.connect(lambda: show_warnings(widget, lines))
    widget.busy.visible = True
    widget.status.value = what
    start_worker(worker)
    return worker


def start_worker(worker: Any) -> None:
    """Start a napari thread worker with the cyclic garbage collector kept on the GUI thread until it finishes
    (:mod:`napari_tomodrgn._gc_guard`)."""
    from napari_tomodrgn import _gc_guard

    _gc_guard.hold()
    worker.finished.connect(_gc_guard.release)
    worker.start()


def _progress_relay(widget: Any, bar: ProgressBar) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback for a worker thread that moves ``bar`` in the main thread."""
    from qtpy.QtCore import QObject, Signal

    class Relay(QObject):
        moved = Signal(int, int)

    relay = Relay()  # created in the main thread: emits from the worker are queued to it
    widget._progress_relays = [*getattr(widget, "_progress_relays", [])[-3:], relay]  # keep it alive

    def move(done: int, total: int) -> None:
        bar.max = max(int(total), 1)
        bar.value = min(int(done), bar.max)

    relay.moved.connect(move)
    bar.value = 0
    bar.visible = True
    return lambda done, total: relay.moved.emit(int(done), int(total))


def show_warnings(widget: Any, lines: list[str]) -> None:
    """Warning lines of a finished call: the first added to ``widget.status`` (with a count of the others), each
    shown as a napari warning notification."""
    if not lines:
        return
    from napari.utils.notifications import show_warning

    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    widget.status.value = f"{widget.status.value} · {lines[0]}{more}"
    for line in lines:
        show_warning(line)


def _finished(widget: Any, worker: Any) -> None:
    if worker in widget.workers:
        widget.workers.remove(worker)
    widget.busy.visible = bool(widget.workers)


def init_async(widget: Any) -> None:
    """Give ``widget`` the attributes :func:`run_in_thread` uses (``workers``, ``worker_threads``, ``busy``)."""
    widget.workers = []
    widget.worker_threads = []
    widget.busy = busy_bar()


def compact(widget: Any) -> None:
    """Let a form fit a narrow dock: wrapping status line, narrow file fields, spare height at the bottom."""
    from magicgui.widgets import FileEdit
    from qtpy.QtWidgets import QSizePolicy

    label = widget.status.native
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    label.setMinimumHeight(2 * label.fontMetrics().height())
    for child in widget:
        if isinstance(child, FileEdit):
            child.line_edit.native.setMinimumWidth(80)
    widget.native.layout().addStretch(1)
