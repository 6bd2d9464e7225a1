"""``tomodrgn view_config`` (a run's settings, data and environment) and ``tomodrgn cleanup`` (prune checkpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_view_config(args: argparse.Namespace) -> None:
    from tomodrgn import api

    print(api.view_config(args.run), end="")


def cmd_cleanup(args: argparse.Namespace) -> None:
    from tomodrgn import api

    plan = api.cleanup(args.run, every=args.every, dry_run=args.dry_run, keep_analysed=args.keep_analysed)
    verb = "would remove" if plan.dry_run else "removed"
    for p in plan.removed:
        print(f"{verb} {p.name}")
    print(f"{verb} {len(plan.removed)} files ({plan.bytes / 1e6:.1f} MB); kept {', '.join(p.name for p in plan.kept)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view_config", help="print a training run's settings, data and environment")
    p.add_argument("run", type=Path, help="training run directory")
    p.set_defaults(func=cmd_view_config)

    p = sub.add_parser("cleanup", help="keep every Nth checkpoint and the last; remove the rest and their latents")
    p.add_argument("run", type=Path, help="training run directory")
    p.add_argument("--every", type=int, default=5, help="keep epochs 0, N, 2N, … (and the last)")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument(
        "--keep-analysed",
        action="store_true",
        help="keep exactly the epochs with an analysis folder (NAME.E, e.g. analyze.39) and the last, not every Nth",
    )
    p.set_defaults(func=cmd_cleanup)
