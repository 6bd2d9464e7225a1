"""Training: configuration, loss, the loop (one process or torchrun), checkpoints, evaluation of trained runs."""

from tomodrgn.training.config import TrainConfig
from tomodrgn.training.evaluate import TrainedModel, load_model, write_volume
from tomodrgn.training.loop import EpochEvent, RunResult, StepEvent, iter_train, train

__all__ = [
    "EpochEvent",
    "RunResult",
    "StepEvent",
    "TrainConfig",
    "TrainedModel",
    "iter_train",
    "load_model",
    "train",
    "write_volume",
]
