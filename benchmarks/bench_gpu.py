"""GPU benchmark (``nox -s bench_gpu``): Triton kernels against the torch reference on the device, then training
throughput at D = 64 and D = 128 with and without ``--amp``, next to the paper's Table 1. Under 8 minutes on one GPU.

1. Lattice-mask kernels: ``backend="triton"`` against ``backend="torch"`` on the GPU for fresh random poses and
   doses: the same kept (image, point) pairs in the same order, coordinates and features within float32 rounding.
2. Training: a simulated 4-class set (41 tilts) trained for a fixed number of steps (decoder 256×3, as Table 1);
   particles/s after the warm-up steps, peak GPU memory, and minutes per 1,000 particles per epoch. With 2 GPUs the
   same under ``torchrun --nproc_per_node 2`` (DistributedDataParallel).

The paper's Table 1 (RTX 3090, decoder 256×3): 0.22 min per 1,000 particles per epoch at D = 64, 0.43 at D = 128.
With no GPU the script stops at once with one line (exit 2); ``--allow-cpu`` runs the same code on the CPU at toy
size (for its test only: the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tomodrgn import api

PAPER_MIN_PER_1000 = {64: 0.22, 128: 0.43}  # Table 1, RTX 3090, decoder 256×3


def check_kernels(device: torch.device, sizes=(16, 64), n_images: int = 64, seed: int = 0) -> list[dict]:
    """Triton against the torch reference on ``device``: identical kept pairs, max |Δ| of coordinates / features."""
    from tomodrgn.kernels import half_lattice
    from tomodrgn.kernels.dispatch import masked_lattice
    from tomodrgn.physics.pose import random_rotations

    out = []
    gen = torch.Generator().manual_seed(seed)
    for d in sizes:
        lattice = half_lattice(d, 419.2 / d).to(device)
        rot = torch.as_tensor(random_rotations(n_images, np.random.default_rng(seed)), device=device).float()
        cum = (torch.rand(n_images, generator=gen) * 120 + 3).to(device)
        mid, tilt_w = cum - 1.5, torch.rand(n_images, generator=gen).to(device)
        feat = torch.randn(3, 3 * d, generator=gen).to(device)
        ref = masked_lattice(lattice, rot, cum, mid, tilt_w, feat, backend="torch")
        row = {"D": d, "images": n_images, "kept": int(ref.image.numel())}
        if device.type != "cuda":
            out.append({**row, "triton": "skipped (no GPU)"})
            continue
        tri = masked_lattice(lattice, rot, cum, mid, tilt_w, feat, backend="triton")
        same = torch.equal(tri.image, ref.image) and torch.equal(tri.point, ref.point)
        row.update(
            same_pairs=bool(same),
            max_abs_coords=float((tri.coords - ref.coords).abs().max()) if same else None,
            max_abs_features=float((tri.features - ref.features).abs().max()) if same else None,
            max_abs_weight=float((tri.weight - ref.weight).abs().max()) if same else None,
        )
        row["ok"] = bool(same and row["max_abs_coords"] < 1e-5 and row["max_abs_features"] < 1e-3)
        out.append(row)
    return out


def train_run(star: Path, outdir: Path, device: str, amp: bool, steps: int, batch_size: int, warmup: int) -> dict:
    """Train ``steps`` steps (one epoch of steps × batch_size particles); particles/s after ``warmup`` steps."""
    config = api.TrainConfig(mode="vae", epochs=1, batch_size=batch_size, dec_arch="256x3", device=device,
                             amp=amp, seed=0, checkpoint_every=1)  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times, n_seen = [], []
    t0 = time.perf_counter()
    for ev in api.iter_train(star, outdir, config):
        if isinstance(ev, api.StepEvent):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            n_seen.append(batch_size)
    wall = time.perf_counter() - t0
    steady = times[warmup:]
    pps = (len(steady) - 1) * batch_size / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
    run = {"device": device, "amp": amp, "processes": 1, "steps": len(times), "particles_per_s": pps,
           "min_per_1000_particles_per_epoch": 1000.0 / pps / 60.0, "wall_seconds": wall}  # fmt: skip
    if device.startswith("cuda"):
        run["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return run


def torchrun_run(star: Path, outdir: Path, amp: bool, batch_size: int) -> dict:
    """The same training under ``torchrun --nproc_per_node 2``: particles/s from its epoch line."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tomodrgn.cli", "train_vae",
           str(star), "-o", str(outdir), "--epochs", "1", "--batch-size", str(batch_size), "--dec-arch", "256x3",
           "--device", "cuda", "--amp" if amp else "--no-amp"]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    found = re.findall(r"([\d.]+) particles/s", res.stdout)
    pps = float(found[-1]) if found else float("nan")
    run = {"device": "cuda x2", "amp": amp, "processes": 2, "particles_per_s": pps,
           "min_per_1000_particles_per_epoch": 1000.0 / pps / 60.0, "wall_seconds": time.perf_counter() - t0,
           "returncode": res.returncode}  # fmt: skip
    if res.returncode:
        run["stderr_tail"] = res.stderr[-2000:]
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_output/bench_gpu.json"))
    p.add_argument("--workdir", type=Path, default=Path("bench_output/gpu"))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="box sizes D")
    p.add_argument("--steps", type=int, default=40, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of particles/s")
    p.add_argument("--n-tilts", type=int, default=41)
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU (for the script's own test only)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("bench_gpu: no GPU present (torch.cuda.is_available() is False); run it on a machine with a CUDA GPU",
              file=sys.stderr)  # fmt: skip
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "CPU (--allow-cpu: not a benchmark)",
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "paper_table1_min_per_1000": PAPER_MIN_PER_1000,
        "kernels": check_kernels(torch.device(device)),
        "training": [],
    }
    for row in result["kernels"]:
        print(f"kernels D={row['D']}: {row}", flush=True)
    n = args.steps * args.batch_size
    for d in args.sizes:
        star = args.workdir / f"data{d}" / "particles.star"
        if not star.exists():
            api.simulate(star.parent, n_particles=n, box_size=d, n_tilts=args.n_tilts, overwrite=True)
        for amp in (False, True):
            name = f"D{d}_{'amp' if amp else 'fp32'}"
            run = train_run(star, args.workdir / f"run_{name}", device, amp, args.steps, args.batch_size, args.warmup)
            if torch.cuda.device_count() >= 2:
                result["training"].append({"D": d, **torchrun_run(star, args.workdir / f"run_{name}_x2", amp,
                                                                  args.batch_size)})  # fmt: skip
            result["training"].append({"D": d, **run, "paper_min_per_1000": PAPER_MIN_PER_1000.get(d)})
            print(f"D={d} amp={amp}: {run['particles_per_s']:.1f} particles/s, "
                  f"{run['min_per_1000_particles_per_epoch']:.3f} min / 1000 particles / epoch "
                  f"(paper: {PAPER_MIN_PER_1000.get(d)}), peak GPU {run.get('peak_gpu_memory_mb', 0):.0f} MB",
                  flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    bad = [row for row in result["kernels"] if row.get("ok") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
