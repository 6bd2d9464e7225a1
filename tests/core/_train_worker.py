"""Training in a subprocess, for tests/core/test_training.py and test_distributed.py (also under torchrun).

Prints one line per step ("step EPOCH STEP", flushed) so a test can kill it at a known point.
Usage: python _train_worker.py STAR OUTDIR [--resume] [--epochs N] [--batch-size B] [--sequential] [--encoder E]
       [--val-tilts K]
"""

import argparse

from tomodrgn.runs import TrainConfig
from tomodrgn.training.loop import StepEvent, iter_train

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("star")
    ap.add_argument("outdir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--sequential", action="store_true")
    ap.add_argument("--encoder", default="per-tilt")
    ap.add_argument("--val-tilts", type=int, default=0)
    args = ap.parse_args()
    cfg = TrainConfig(
        zdim=2,
        encoder=args.encoder,
        enc_arch_a="16x1",
        enc_arch_b="16x1",
        embed_dim=8,
        dec_arch="32x2",
        epochs=args.epochs,
        batch_size=args.batch_size,
        sequential_tilts=args.sequential,
        lr=1e-3,
        seed=3,
        device="cpu",
        backend="torch",
        val_tilts=args.val_tilts,
        amp=False,  # fp32: one and N processes sum in different orders, which bf16 rounding would magnify
    )
    for ev in iter_train(args.star, args.outdir, None if args.resume else cfg, resume=args.resume):
        if isinstance(ev, StepEvent):
            print(f"step {ev.epoch} {ev.step}", flush=True)
    print("done", flush=True)
