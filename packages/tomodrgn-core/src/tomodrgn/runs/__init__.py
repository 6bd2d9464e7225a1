"""Runs: one training run per folder — its layout and file names, creation and overwrite rules, settings
(:class:`TrainConfig`), checkpoints, the particles it was trained on, ``view_config`` / ``cleanup``, and loading a
trained model (:func:`load_model`).

Names are imported lazily (on first use), so ``tomodrgn.runs.config`` can be imported without torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "RunFolder": "folder",
    "TrainConfig": "config",
    "TrainedModel": "trained",
    "load_model": "trained",
    "write_volume": "trained",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
