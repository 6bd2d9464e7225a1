"""Checkpoints and latents written atomically, the latest-links, and the resume search.

File names are those of :mod:`tomodrgn.runs.folder`. Every file is written as ``*.tmp`` and renamed, so a
killed process never leaves a half-written ``*.pt``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.runs.create import atomic_write_bytes, write_error
from tomodrgn.runs.folder import RunFolder, checkpoint_name

__all__ = [
    "atomic_np_save",
    "atomic_torch_save",
    "checkpoint_name",
    "find_checkpoint",
    "latest_checkpoint",
    "link_latest",
    "list_checkpoints",
    "load_checkpoint",
]


def atomic_torch_save(obj, path: Path) -> Path:
    """``torch.save`` to ``path`` via ``path.tmp``: serialised in memory first, so a full disk raises an OSError
    (ENOSPC, named by :func:`~tomodrgn.io.errors.user_error_message`) instead of torch's "unexpected pos" error, and
    the ``.tmp`` is removed."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getbuffer())


def atomic_np_save(arr: np.ndarray, path: Path) -> Path:
    buf = io.BytesIO()
    np.save(buf, arr)
    return atomic_write_bytes(path, buf.getbuffer())


def link_latest(target: Path, link: Path) -> None:
    """Make ``link`` a relative symlink to ``target`` (atomically), or a copy where symlinks are unavailable."""
    tmp = link.with_name(link.name + ".tmp")
    try:
        try:
            if tmp.is_symlink() or tmp.exists():
                tmp.unlink()
            os.symlink(target.name, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        os.replace(tmp, link)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, link) from e


def list_checkpoints(run_dir: str | Path) -> list[tuple[tuple[int, int], Path]]:
    """Checkpoints of a run, oldest first, keyed by (completed epochs, steps into the next epoch)."""
    return RunFolder(run_dir).checkpoints()


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - report any unreadable file by name
        raise InputError(f"cannot read checkpoint {path}: {e}") from e


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict] | None:
    """Newest checkpoint that loads completely (a damaged newer one is skipped), or None."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except ValueError:
            continue
    return None


def find_checkpoint(run_dir: str | Path, epoch: int | None = None) -> Path:
    """``weights.{epoch}.pt``, or the latest checkpoint when epoch is None; error naming the run directory."""
    run = RunFolder(run_dir)
    if epoch is not None:
        p = run.checkpoint(epoch)
        if not p.exists():
            raise FileNotFoundError(f"no checkpoint for epoch {epoch} in {run_dir} (expected {p.name})")
        return p
    found = run.checkpoints()
    if not found:
        raise FileNotFoundError(f"no weights.*.pt checkpoint in {run_dir}")
    return found[-1][1]


def rng_state() -> dict:
    """The torch / numpy / Python (and CUDA) random states, saved in every checkpoint for an exact resume."""
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
