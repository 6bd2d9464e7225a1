"""Training throughput benchmark: particles/s, seconds per epoch, peak memory, points per particle → JSON.

Simulates a 4-class dataset (default D = 64, 41 tilts), trains the VAE for a few epochs on each available device
(CPU, and CUDA where present) and reports the steady-state numbers (first epoch excluded when more than one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tomodrgn import api
from tomodrgn.kernels import half_lattice
from tomodrgn.models import HartleyDecoder, parse_arch
from tomodrgn.physics.dose import dose_per_tilt
from tomodrgn.runtime.huge_pages import huge_pages_on
from tomodrgn.runtime.precision import precision_note


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


STAGES = (
    "tomodrgn.data",
    "tomodrgn.lattice_mask",
    "tomodrgn.encoder_input",
    "tomodrgn.encoder",
    "tomodrgn.featurize",
    "tomodrgn.decoder",
    "tomodrgn.render_loss",
    "tomodrgn.backward",
    "tomodrgn.optimizer",
)
MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear_backward", "aten::matmul")


def matmul_peak_gflops(device: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured float32 matrix-multiply throughput of this device (GFLOP/s): the roofline the decoder runs against."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2.0 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def decoder_macs_per_point(config: api.TrainConfig, D: int) -> int:
    """Multiply-accumulates of one decoder evaluation (features → hidden layers → 2 outputs), z term excluded:
    counted from the linear layers of the decoder the config builds."""
    dec = HartleyDecoder(D, 0, parse_arch(config.dec_arch), config.feat_sigma, config.n_features)
    return sum(m.in_features * m.out_features for m in dec.modules() if isinstance(m, torch.nn.Linear))


def profile_steps(star: Path, outdir: Path, config: api.TrainConfig, warmup: int = 2, steps: int = 6) -> dict:
    """Time per training stage (ms per step) from torch.profiler over ``steps`` steps after ``warmup`` steps.

    Stages are the ``record_function`` ranges of the training loop (inclusive times: ``decoder`` contains
    ``featurize``); ``matmul`` is the self time of the matrix-multiply kernels anywhere (forward and backward).
    """
    from torch.profiler import ProfilerActivity, profile

    config = dataclasses.replace(config, epochs=10_000, checkpoint_every=10_000)  # stopped after the profiled steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if config.device.startswith("cuda") else [])
    events = api.iter_train(star, outdir, config)
    n_seen = 0
    for ev in events:
        if isinstance(ev, api.StepEvent):
            n_seen += 1
            if n_seen >= warmup:
                break
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for ev in events:
            if isinstance(ev, api.StepEvent):
                n_seen += 1
                if n_seen >= warmup + steps:
                    break
    wall = time.perf_counter() - t0
    events.close()
    table = {e.key: e for e in prof.key_averages()}
    use_cuda = config.device.startswith("cuda")

    def ms(e, self_time: bool = False) -> float:
        if use_cuda:
            us = e.self_device_time_total if self_time else e.device_time_total
            if us:
                return us / 1e3 / steps
        return (e.self_cpu_time_total if self_time else e.cpu_time_total) / 1e3 / steps

    out = {"steps": steps, "wall_ms_per_step": 1e3 * wall / steps}
    out["stages_ms_per_step"] = {k.split(".", 1)[1]: round(ms(table[k]), 2) for k in STAGES if k in table}
    out["matmul_ms_per_step"] = round(sum(ms(table[k], True) for k in MATMUL_OPS if k in table), 2)
    trig = sum(ms(table[k], True) for k in ("aten::sin", "aten::cos") if k in table)
    out["sin_cos_ms_per_step"] = round(trig, 2)
    return out


def bench_device(star: Path, outdir: Path, device: str, args) -> dict:
    config = api.TrainConfig(
        mode="vae",
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=device,
        backend=args.backend,
        amp=args.amp,
        seed=0,
        checkpoint_every=args.epochs,
        n_tilts=args.train_tilts,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    epochs, faults = [], []  # faults: (epoch, minor page faults of the step)
    t0 = time.perf_counter()
    last = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for ev in api.iter_train(star, outdir, config):
        if isinstance(ev, api.StepEvent):
            now = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            faults.append((ev.epoch, now - last))
            last = now
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
        # allocation churn: page faults of a step of the last epoch (median)
        "minor_faults_per_step": float(np.median([f for e, f in faults if e == faults[-1][0]])),
        # flat when there is no churn: the median of each epoch (the first holds the warm-up)
        "minor_faults_per_step_by_epoch": [
            float(np.median([f for e, f in faults if e == ep])) for ep in sorted({e for e, _ in faults})
        ],
        "precision": precision_note(config.amp, torch.device(device)),
        "huge_pages": huge_pages_on(os.environ),
    }
    if device.startswith("cuda"):
        out["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    out["decoder_macs_per_point"] = decoder_macs_per_point(config, args.D)
    out["matmul_peak_gflops"] = matmul_peak_gflops(device)
    print(f"  [{device}] {out['minor_faults_per_step']:.0f} minor page faults per step", flush=True)
    if args.profile:
        prof_dir = outdir.with_name(outdir.name + "_profile")
        out["profile"] = profile_steps(star, prof_dir, config)
        for stage, t in out["profile"]["stages_ms_per_step"].items():
            print(f"  [{device}] {stage:>14s}: {t:8.1f} ms/step", flush=True)
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
    p.add_argument("--train-tilts", type=int, default=None, help="tilts sampled per particle in training (all)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 where native (default)")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda where present")
    p.add_argument("--no-profile", dest="profile", action="store_false", help="skip the per-stage time breakdown")
    args = p.parse_args(argv)
    if argv is None:
        api.restart_with_huge_pages(sys.argv)  # as tomodrgn train_vae runs: large buffers on huge pages

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
            "train_tilts": args.train_tilts or args.n_tilts,
            "pixel_size": series.pixel_size,
        },
        "points_per_particle": kept,
        "points_per_particle_unmasked": unmasked,
        # training samples train_tilts of n_tilts at random: expected kept points per training example
        "points_per_training_particle": kept * (args.train_tilts or args.n_tilts) / args.n_tilts,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "runs": [],
    }
    for dev in devices:
        run_dir = args.workdir / f"run_{dev.replace(':', '')}"
        for d in (run_dir, run_dir.with_name(run_dir.name + "_profile")):
            if d.exists():
                shutil.rmtree(d)
        run = bench_device(star, run_dir, dev, args)
        # achieved decoder throughput: one evaluation per kept (k, −k) pair; forward 2 FLOP per MAC, backward ~4
        evaluations = results["points_per_training_particle"] / 2
        flop = 6.0 * run["decoder_macs_per_point"] * evaluations * run["particles_per_s"]
        run["decoder_gflops"] = flop / 1e9
        run["decoder_fraction_of_matmul_peak"] = run["decoder_gflops"] / run["matmul_peak_gflops"]
        print(
            f"  [{dev}] decoder ≈ {run['decoder_gflops']:.0f} GFLOP/s = "
            f"{100 * run['decoder_fraction_of_matmul_peak']:.0f} % of measured matmul peak "
            f"({run['matmul_peak_gflops']:.0f} GFLOP/s)",
            flush=True,
        )
        results["runs"].append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
