"""Training: the loop (one process or torchrun), its steps, loss, held-out validation and weight averaging.

What a run leaves on disk, its settings and loading a trained model are in :mod:`tomodrgn.runs`; the device,
precision, batch-size search and process set-up in :mod:`tomodrgn.runtime`. Names are imported lazily (on first use).
"""

from __future__ import annotations

from tomodrgn.lazy import lazy_getattr

_WHERE = {
    "EpochEvent": "events",
    "RunResult": "events",
    "StepEvent": "events",
    "Trainer": "trainer",
    "iter_train": "loop",
    "train": "loop",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
