"""Training throughput benchmark: particles/s, seconds per epoch, peak memory, points per particle → JSON.

Simulates a 4-class dataset (default D = 64, 41 tilts), trains the VAE for a few epochs on each available device
(CPU, and CUDA where present) and reports the steady-state numbers (first epoch excluded when more than one).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tomodrgn import api
from tomodrgn.kernels import half_lattice
from tomodrgn.physics.dose import dose_per_tilt


def points_per_particle(series: api.ParticleSeries) -> tuple[float, float]:
    """Mean lattice points per particle kept by the dose mask, and before it (full lattice, both halves)."""
    lat = half_lattice(series.box_size, series.pixel_size)
    kept, total = [], []
    for rows in series.image_indices:
        dose = series.dose[rows]
        mid = dose - dose_per_tilt(dose) / 2
        kept.append(2 * int((mid[:, None] < lat.optimal_exposure.double().numpy()[None, :]).sum()))
        total.append(2 * lat.n_points * len(rows))
    return float(np.mean(kept)), float(np.mean(total))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_device(star: Path, outdir: Path, device: str, args) -> dict:
    config = api.TrainConfig(
        mode="vae",
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=device,
        backend=args.backend,
        amp=device.startswith("cuda") and args.amp,
        seed=0,
        checkpoint_every=args.epochs,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    epochs = []
    t0 = time.perf_counter()
    for ev in api.iter_train(star, outdir, config):
        if isinstance(ev, api.EpochEvent):
            epochs.append(ev)
            print(
                f"  [{device}] epoch {ev.epoch}: {ev.particles_per_s:.1f} particles/s, {ev.seconds:.1f} s", flush=True
            )
    wall = time.perf_counter() - t0
    steady = epochs[1:] if len(epochs) > 1 else epochs
    out = {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else f"{platform.machine()} CPU",
        "threads": torch.get_num_threads(),
        "particles_per_s": float(np.mean([e.particles_per_s for e in steady])),
        "seconds_per_epoch": float(np.mean([e.seconds for e in steady])),
        "epochs": len(epochs),
        "wall_seconds": wall,
        "final_loss": epochs[-1].loss,
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("bench_output/bench.json"))
    p.add_argument("--workdir", type=Path, default=Path("bench_output"))
    p.add_argument("-D", type=int, default=64)
    p.add_argument("--n-particles", type=int, default=64)
    p.add_argument("--n-tilts", type=int, default=41)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--backend", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda where present")
    args = p.parse_args(argv)

    star = args.workdir / "data" / "particles.star"
    if not star.exists():
        print(f"simulating {args.n_particles} particles, D={args.D}, {args.n_tilts} tilts ...", flush=True)
        api.simulate(args.workdir / "data", n_particles=args.n_particles, box_size=args.D, n_tilts=args.n_tilts)
    series = api.read_particles(star)
    kept, unmasked = points_per_particle(series)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    results = {
        "dataset": {
            "n_particles": series.n_particles,
            "D": series.box_size,
            "n_tilts": args.n_tilts,
            "pixel_size": series.pixel_size,
        },
        "points_per_particle": kept,
        "points_per_particle_unmasked": unmasked,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "runs": [],
    }
    for dev in devices:
        run_dir = args.workdir / f"run_{dev.replace(':', '')}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        results["runs"].append(bench_device(star, run_dir, dev, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
