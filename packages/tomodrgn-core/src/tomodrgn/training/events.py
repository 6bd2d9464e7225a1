"""What training reports: a :class:`StepEvent` per optimiser step, an :class:`EpochEvent` per epoch, and the
:class:`RunResult` of :func:`tomodrgn.training.loop.train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StepEvent:
    """After each optimiser step. ``loss``/``mse``/``kl`` are of the global batch; particles/s over this step."""

    epoch: int
    step: int
    global_step: int
    steps_per_epoch: int
    loss: float
    mse: float
    kl: float
    particles_per_s: float


@dataclass
class EpochEvent:
    """After each epoch: means over the epoch; ``checkpoint`` is the file written (None if none this epoch)."""

    epoch: int
    loss: float
    mse: float
    kl: float
    particles_per_s: float
    seconds: float
    checkpoint: Path | None = None
    n_epochs: int | None = None  # epochs of the whole run (``config.epochs``)
    val_loss: float | None = None  # held-out tilts' weighted error (config.val_tilts > 0), comparable with mse
    latent: bool = True  # a VAE run (a homogeneous run has no KL term)


@dataclass
class RunResult:
    outdir: Path
    epochs_completed: int
    final_loss: float | None
    checkpoint: Path | None
    stopped: bool = False
    history: list[EpochEvent] = field(default_factory=list)
