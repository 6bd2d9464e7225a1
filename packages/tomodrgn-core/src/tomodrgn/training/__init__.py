"""Training: configuration, loss, the loop (one process or torchrun), checkpoints, evaluation of trained runs.

Names are imported lazily (on first use), so ``tomodrgn.training.config`` can be imported without torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "EpochEvent": "events",
    "RunFolder": "run_folder",
    "RunResult": "events",
    "StepEvent": "events",
    "Trainer": "trainer",
    "TrainConfig": "config",
    "TrainedModel": "evaluate",
    "iter_train": "loop",
    "load_model": "evaluate",
    "train": "loop",
    "write_volume": "evaluate",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
