"""Run-directory housekeeping: a readable summary of a run (``view_config``) and checkpoint pruning (``cleanup``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tomodrgn.io.errors import InputError
from tomodrgn.runs import checkpoint as ck
from tomodrgn.runs.folder import RunFolder


def view_config(run_dir: str | Path) -> str:
    """Human-readable text: the run's training settings (``config.json``), its data (from the latest checkpoint:
    STAR, particles, box, pixel size, tilts), its checkpoints, last logged epoch, and the environment of this
    process (tomodrgn, torch, Python versions)."""
    import platform

    import torch

    from tomodrgn import __version__

    run = Path(run_dir)
    folder = RunFolder(run)
    cfg_path = folder.config
    if not cfg_path.exists():
        raise InputError(f"{cfg_path} not found: is {run} a tomodrgn training run?")
    cfg = json.loads(cfg_path.read_text())
    lines = [f"run: {run.resolve()}", "", "settings (config.json):"]
    width = max(len(k) for k in cfg) if cfg else 0
    lines += [f"  {k:<{width}}  {v}" for k, v in cfg.items()]
    found = ck.list_checkpoints(run)
    lines += ["", "data (latest checkpoint):"]
    if found:
        try:
            meta = dict(ck.load_checkpoint(found[-1][1]).get("dataset") or {})
        except ValueError as e:
            meta = {"unreadable": str(e)}
        skip = {"norm"}
        lines += [f"  {k}: {v}" for k, v in meta.items() if k not in skip and not hasattr(v, "shape")]
    else:
        lines.append("  (no checkpoint)")
    names = [p.name for _, p in found]
    lines += ["", f"checkpoints ({len(names)}): {', '.join(names) if names else 'none'}"]
    log = folder.log
    if log.exists():
        last = [ln for ln in log.read_text().splitlines() if ln.startswith("epoch")]
        if last:
            lines.append(f"last logged: {last[-1]}")
    lines += [
        "",
        "environment (this process):",
        f"  tomodrgn {__version__}, torch {torch.__version__}, Python {platform.python_version()}",
        f"  {platform.platform()}; CUDA available: {torch.cuda.is_available()}",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class CleanupPlan:
    """Files ``removed`` (or to remove, with ``dry_run``), checkpoints ``kept`` and the ``bytes`` freed."""

    removed: list[Path]
    kept: list[Path]
    bytes: int
    dry_run: bool


def cleanup(run_dir: str | Path, every: int = 5, dry_run: bool = False, keep_analysed: bool = False) -> CleanupPlan:
    """Keep the checkpoints of every ``every``-th epoch (0, every, 2·every, …), the last one and the last full
    epoch's; remove the others and their latents ``z.N.npy`` / ``z.N.logvar.npy`` (``z.N.train.pkl`` too; older
    mid-epoch ``weights.N.stepS.pt`` too). The latest-links ``weights.pt`` / ``z.npy`` stay valid. ``keep_analysed``:
    keep the epochs E of the run's analysis folders (``NAME.E``) instead of every ``every``-th (the published
    tomoDRGN's rule). ``dry_run``: only report."""
    run = Path(run_dir)
    if every < 1:
        raise InputError(f"--every must be ≥ 1, got {every}")
    if not run.is_dir():
        raise InputError(f"{run} is not a directory")
    found = ck.list_checkpoints(run)
    if not found:
        raise InputError(f"no weights.*.pt checkpoint in {run}")
    last = found[-1][1]
    analysed = {int(m.group(1)) for p in run.iterdir() if p.is_dir() and (m := re.fullmatch(r".+\.(\d+)", p.name))}
    full = [path for (_, step), path in found if step == 0]
    last_full = full[-1] if full else None  # z.npy links to its latents
    removed, kept = [], []
    for (done, step), path in found:
        epoch = done - 1 if step == 0 else done
        kept_epoch = epoch in analysed if keep_analysed else epoch % every == 0
        if path in (last, last_full) or (step == 0 and kept_epoch):
            kept.append(path)
            continue
        removed.append(path)
        if step == 0:
            folder = RunFolder(run)
            latents = (folder.z(epoch), folder.logvar(epoch), folder.tomodrgn_z(epoch))
            removed += [p for p in latents if p.exists()]
    size = sum(p.stat().st_size for p in removed)
    if not dry_run:
        for p in removed:
            p.unlink()
    return CleanupPlan(removed, kept, size, dry_run)
