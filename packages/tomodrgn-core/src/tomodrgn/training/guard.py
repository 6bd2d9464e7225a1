"""Safety of a training run: its output folder made only after every check passed (and removed again after a failed
start), and a stop at the first NaN or infinite loss or weight, keeping the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from tomodrgn.io.errors import InputError
from tomodrgn.runs.config import TrainConfig
from tomodrgn.runs.create import prepare_run_dir
from tomodrgn.runs.folder import RunFolder
from tomodrgn.runtime.distributed import DistContext, all_gather_objects


class TrainingDiverged(InputError):
    """The loss (or a weight) became NaN or infinite; the run stopped without writing the bad state."""


def divergence_message(what: str, epoch: int, step: int, steps_per_epoch: int, config: TrainConfig, kept) -> str:
    """One line: where training diverged (epoch counted from 0 as in the files, k/N as in the epoch lines), which
    checkpoint is the last good one, and the likely causes."""
    keep = f"the last good checkpoint is {kept}" if kept else "no checkpoint was written"
    lr = config.lr
    return (
        f"training stopped: {what} in epoch {epoch} ({epoch + 1}/{config.epochs}) at step {step}/{steps_per_epoch}; "
        f"{keep}. Likely causes: a learning "
        f"rate too high (--lr {lr:g}), a wrong pixel size (--pixel-size / _rlnDetectorPixelSize), NaN or extreme pixel "
        "values in the images, or wrong CTF/dose values in the STAR file"
    )


def prepare_outdir(outdir: Path, config: TrainConfig, resume: bool, overwrite: bool, ctx: DistContext) -> list:
    """Rank 0 readies the folder and writes config.json; every rank gets the same error. Returns what rank 0
    created (to remove after a failed start)."""
    created, error = [], None
    run = RunFolder(outdir)
    if ctx.is_main:
        try:
            if not outdir.exists():
                created.append(outdir)
            removed = prepare_run_dir(outdir, resume, overwrite)
            for path in (run.config, run.log):
                if not path.exists():
                    created.append(path)
            config.save(run.config)
            if removed:
                with run.log.open("a") as log:
                    log.write(
                        f"# --overwrite removed {len(removed)} file(s) of the previous run: "
                        + ", ".join(p.name for p in removed)
                        + "\n"
                    )
        except Exception as e:  # noqa: BLE001 - re-raised on every rank below
            error = e
    if ctx.distributed:
        errors = [e for e in all_gather_objects(error, ctx) if e is not None]
        error = errors[0] if errors else None
    if error is not None:
        remove_created(created)
        raise error
    return created


def remove_created(created: list[Path]) -> None:
    """Remove files (and then folders) a failed start made; folders only when empty."""
    for p in sorted(created, key=lambda p: p.is_dir()):
        try:
            p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
        except OSError:
            pass


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
