"""Runs: one training run per folder — its layout and file names, creation and overwrite rules, settings
(:class:`TrainConfig`), checkpoints, the particles it was trained on, ``view_config`` / ``cleanup``, and loading a
trained model (:func:`load_model`).

Names are imported lazily (on first use), so ``tomodrgn.runs.config`` can be imported without torch.
"""

from __future__ import annotations

from tomodrgn.lazy import lazy_getattr

_WHERE = {
    "RunFolder": "folder",
    "TrainConfig": "config",
    "TrainedModel": "trained",
    "load_model": "trained",
    "write_volume": "trained",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
