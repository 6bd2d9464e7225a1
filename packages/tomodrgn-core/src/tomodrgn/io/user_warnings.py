"""Warnings as a user sees them: one line each, ``warning: <message>``, each kind once.

Python prints a warning as ``/path/module.py:175: UserWarning: <message>`` followed by the source line that raised
it. :func:`warnings_to` sends the warnings raised in the calling thread to a sink (the CLI's stderr, the plugin's
status line) as one line, without module path, line number or source line; a warning of a kind already shown (same
category and message up to its file names and numbers, e.g. one per stack file) is counted, not repeated, and the
count is reported once when the block ends. Other threads keep Python's own display, so a sink never receives a
warning of another command running in the same process.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()
_install_lock = threading.Lock()
_python_showwarning = None

#: parts of a message that differ between warnings of one kind (paths, numbers)
_VARIABLE = re.compile(r"\S*[/\\]\S*|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def warning_line(message: Warning | str) -> str:
    """The one line shown for a warning: ``warning: <message>`` with white space folded."""
    return "warning: " + " ".join(str(message).split())


def _kind(message: Warning | str, category: type) -> tuple[str, str]:
    return category.__name__, _VARIABLE.sub("#", " ".join(str(message).split()))


def _dispatch(message, category, filename, lineno, file=None, line=None):
    sink = getattr(_local, "sink", None)
    if sink is None:
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    seen: Counter = _local.seen
    kind = _kind(message, category)
    seen[kind] += 1
    if seen[kind] == 1:
        sink(warning_line(message))


def _install() -> None:
    """Route ``warnings.showwarning`` through :func:`_dispatch` (once per process; other threads unchanged)."""
    global _python_showwarning
    with _install_lock:
        if warnings.showwarning is not _dispatch:
            _python_showwarning = warnings.showwarning
            warnings.showwarning = _dispatch


@contextmanager
def warnings_to(sink: Callable[[str], None]) -> Iterator[Counter]:
    """Within the block, each warning raised in this thread reaches ``sink`` as one line (:func:`warning_line`),
    the first of each kind only; at the end one line counts the repeats left out. Yields the counts per kind."""
    _install()
    outer = getattr(_local, "sink", None), getattr(_local, "seen", None)
    _local.sink, _local.seen = sink, Counter()
    seen = _local.seen
    try:
        yield seen
    finally:
        _local.sink, _local.seen = outer
        repeats = sum(n - 1 for n in seen.values())
        if repeats:
            kinds = sum(1 for n in seen.values() if n > 1)
            what = "the same kind" if kinds == 1 else f"{kinds} kinds"
            sink(f"warning: {repeats} more warning{'s' * (repeats > 1)} of {what} as above not shown")
