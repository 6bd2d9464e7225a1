"""Training as users call it: :func:`iter_train`, a generator of progress events (for a GUI thread), and
:func:`train` (tqdm) on top of it. The work is done by :class:`tomodrgn.training.trainer.Trainer` (set-up, epochs,
steps, checkpoints); here it runs inside the distributed context (one process or ``torchrun``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from tomodrgn.io.particles import ParticleSeries
from tomodrgn.runs import checkpoint as ck
from tomodrgn.runs.config import TrainConfig
from tomodrgn.runs.create import check_run_dir
from tomodrgn.runs.folder import RunFolder
from tomodrgn.runtime.distributed import barrier, init_distributed, shutdown
from tomodrgn.training.events import EpochEvent, RunResult, StepEvent
from tomodrgn.training.trainer import Trainer

__all__ = ["EpochEvent", "RunResult", "StepEvent", "epoch_line", "iter_train", "train"]


# ---------------------------------------------------------------------------------------------------- the loop
def iter_train(
    star_or_series: str | Path | ParticleSeries,
    outdir: str | Path,
    config: TrainConfig | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[StepEvent | EpochEvent]:
    """Train, yielding a :class:`StepEvent` per step and an :class:`EpochEvent` per epoch.

    Writes into ``outdir`` (rank 0 only): ``config.json``, ``train.log``, ``weights.{e}.pt`` every
    ``checkpoint_every`` epochs and at the end, ``z.{e}.npy`` / ``z.{e}.logvar.npy`` (VAE; μ and log σ² per particle
    in STAR particle order: from an encoder pass over all tilts of each particle when ``z_all_tilts``, else from the
    epoch's training pass), and ``weights.pt`` / ``z.npy`` links to the latest.
    ``resume``: continue from the newest complete checkpoint in ``outdir`` (same optimiser state, epoch, step;
    its saved config is used; a ``config`` given with ``resume`` only changes epochs, num_workers, device,
    checkpoint_every and amp). ``stop_event``: when set, stop after the current step and write a checkpoint.
    Works unchanged under ``torchrun`` (one DistributedSampler replica per process).

    A non-empty ``outdir`` is refused unless ``resume`` or ``overwrite`` (which first deletes the old run's files:
    :func:`tomodrgn.runs.create.prepare_run_dir`). The options and the STAR file are checked before anything is
    written; a run that fails before its first checkpoint removes the files it wrote (and the folder it made).
    A NaN or infinite loss stops training with :class:`TrainingDiverged` before the bad step is taken, so the
    last checkpoint written stays the last good one.
    """
    outdir = Path(outdir)
    check_run_dir(outdir, resume, overwrite)
    ctx = init_distributed(config.device if config is not None else "auto")
    try:
        trainer = Trainer(star_or_series, outdir, config, resume, ctx)  # every check; nothing written yet
        trainer.start(resume, overwrite)
        yield from trainer.epochs(stop_event)
        # all processes finish together before the group is torn down: a gloo process whose peer destroyed the group
        # while it was still running could abort ("terminate called without an active exception", ~1 run in 5 under
        # load; not after an error, where a barrier could wait forever)
        barrier(ctx)
    finally:
        shutdown(ctx)


def epoch_line(ev: EpochEvent) -> str:
    """``epoch E (k/N) loss … mse … [kl …] s/epoch … particles/s [val_loss …] [-> weights.E.pt]``: E counted from 0
    as in the files and train.log (:data:`~tomodrgn.runs.folder.EPOCH_COUNTING`), k = E + 1 of N epochs; kl for a VAE
    run only."""
    count = f" ({ev.epoch + 1}/{ev.n_epochs})" if ev.n_epochs else ""
    return (
        f"epoch {ev.epoch}{count} loss {ev.loss:.5f} mse {ev.mse:.5f} "
        + (f"kl {ev.kl:.3f} " if ev.latent else "")
        + f"{ev.seconds:.1f} s/epoch {ev.particles_per_s:.1f} particles/s"
        + (f" val_loss {ev.val_loss:.5f}" if ev.val_loss is not None else "")
        + (f" -> {ev.checkpoint.name}" if ev.checkpoint else "")
    )


def train(
    star_or_series: str | Path | ParticleSeries,
    outdir: str | Path,
    config: TrainConfig | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Run :func:`iter_train` to the end; returns a :class:`RunResult`.

    ``progress``: print one :func:`epoch_line` per epoch on stdout, with a tqdm bar per epoch (on stderr) only when
    stderr is a terminal, so output redirected to a file or pipe has no carriage-return progress noise.
    ``resume`` / ``overwrite``: see :func:`iter_train`.
    """
    from tqdm.auto import tqdm

    outdir = Path(outdir)
    history: list[EpochEvent] = []
    bar = None
    last_loss, last_step = None, 0
    show_bar = progress and sys.stderr.isatty()
    for ev in iter_train(star_or_series, outdir, config, stop_event, resume, overwrite):
        if isinstance(ev, StepEvent):
            if bar is None and show_bar:
                bar = tqdm(total=ev.steps_per_epoch, desc=f"epoch {ev.epoch}", unit="batch", leave=False)
                bar.n = ev.step - 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ev.loss:.4f}", pps=f"{ev.particles_per_s:.0f}")
            last_loss, last_step = ev.loss, ev.global_step
        else:
            history.append(ev)
            if bar is not None:
                bar.close()
                bar = None
            if progress:
                tqdm.write(epoch_line(ev), file=sys.stdout)
                sys.stdout.flush()
    if bar is not None:
        bar.close()
    found = ck.list_checkpoints(outdir) if outdir.is_dir() else []
    latest = found[-1] if found else None
    epochs_done = latest[0][0] if latest else 0
    saved = RunFolder(outdir).config
    final_cfg = config or (TrainConfig.load(saved) if saved.exists() else None)
    if final_cfg is not None and final_cfg.max_steps is not None and not last_step and latest:  # resumed: no step
        last_step = int(ck.load_checkpoint(latest[1]).get("global_step", 0))
    steps_done = final_cfg is not None and final_cfg.max_steps is not None and last_step >= final_cfg.max_steps
    stopped = final_cfg is not None and epochs_done < final_cfg.epochs and not steps_done
    return RunResult(
        outdir=outdir,
        epochs_completed=epochs_done,
        final_loss=history[-1].loss if history else last_loss,
        checkpoint=latest[1] if latest else None,
        stopped=stopped,
        history=history,
    )
