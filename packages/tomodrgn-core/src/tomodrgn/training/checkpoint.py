"""Run-directory files: checkpoints ``weights.N.pt`` (atomic), latents ``z.N.npy``, the latest-links, resume search.

Names: ``weights.{e}.pt`` after epoch e (0-based) completed; ``weights.{e}.step{s}.pt`` when training stopped
after s steps of epoch e. ``weights.pt`` / ``z.npy`` / ``z.logvar.npy`` point to (or copy) the latest.
Every file is written as ``*.tmp`` and renamed, so a killed process never leaves a half-written ``*.pt``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from tomodrgn.io.errors import InputError
from tomodrgn.training.run_dir import atomic_write_bytes, write_error

_CKPT = re.compile(r"^weights\.(\d+)(?:\.step(\d+))?\.pt$")


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


def checkpoint_name(epoch: int, step_in_epoch: int = 0) -> str:
    return f"weights.{epoch}.pt" if step_in_epoch == 0 else f"weights.{epoch}.step{step_in_epoch}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[tuple[int, int], Path]]:
    """Checkpoints of a run, oldest first, keyed by (completed epochs, steps into the next epoch)."""
    out = []
    for p in Path(run_dir).iterdir():
        m = _CKPT.match(p.name)
        if m:
            e, s = int(m.group(1)), m.group(2)
            out.append(((e + 1, 0) if s is None else (e, int(s)), p))
    return sorted(out)


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
    run_dir = Path(run_dir)
    if epoch is not None:
        p = run_dir / checkpoint_name(epoch)
        if not p.exists():
            raise FileNotFoundError(f"no checkpoint for epoch {epoch} in {run_dir} (expected {p.name})")
        return p
    found = list_checkpoints(run_dir) if run_dir.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no weights.*.pt checkpoint in {run_dir}")
    return found[-1][1]
