"""Paper-scale benchmark: every stage a user runs, at several particle counts, with wall time, peak memory and disk.

For each particle count it simulates the 4-class problem (D = 64, 41 tilts by default; float16 stacks, MRC mode 12,
unless ``--float32``), then runs, each as its own ``tomodrgn`` process so that its peak resident set is its own
(``os.wait4``):
``simulate``, ``backproject``, ``train_vae`` (``--max-steps 100`` at ``--n-tilts 11``, batch 32, with the epoch
time those steps imply; the latents of every particle come from the all-tilt encoder pass at its end),
``eval_images`` (latents of all particles from all tilts), ``analyze`` with k = 20 and with k = 100 (UMAP
included), ``analyze_volumes`` with a volume for every particle (streamed) and ``filter_star`` (a cluster to a
STAR). It writes the rows as JSON and a Markdown table (for ``docs/benchmarks.md``) and prints the growth from the
smallest to the largest count (time and memory per stage).

    python benchmarks/bench_scale.py --particles 2000 5000 20000 --out bench_output/scale.json

A count can be run in parts: ``--resume`` keeps its folder and skips the stages already measured, ``--stages``
names the ones to run now (e.g. ``--particles 20000 --resume --stages analyze_volumes``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run_stage(name: str, args: list[str], log: Path) -> dict:
    """Run ``tomodrgn ARGS`` as a child process; its wall time (s) and peak resident set (MiB)."""
    cmd = [sys.executable, "-m", "tomodrgn.cli", *args]
    t0 = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ tomodrgn {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"stage {name} failed (exit {proc.returncode}); see {log}")
    return {"stage": name, "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def disk_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def training_pass(run: Path, n: int) -> dict:
    """From train.log's epoch line: the training steps' own time (without set-up and latents) and particles/s, and
    the time of a whole epoch over ``n`` particles they imply."""
    for line in (run / "train.log").read_text().splitlines():
        if line.startswith("epoch ") and " time " in line:
            secs = float(line.split(" time ")[1].split("s")[0])
            pps = float(line.split(" particles/s ")[1].split()[0])
            return {"steps_s": secs, "particles_per_s": pps, "epoch_s": round(n / pps, 1)}
    return {}


STAGES = ("simulate", "backproject", "train_vae", "eval_images", "analyze", "analyze_volumes", "filter_star")


def bench_count(n: int, work: Path, args) -> list[dict]:
    """Every stage in ``args.stages`` for ``n`` particles in ``work``. Each stage's row is saved to
    ``work/rows.json`` as soon as it ends; with ``--resume`` a stage whose row is there is not run again (a count that
    takes longer than one sitting runs in several, its rows each measured whole)."""
    work.mkdir(parents=True, exist_ok=True)
    log, saved = work / "stages.log", work / "rows.json"
    rows: list[dict] = json.loads(saved.read_text()) if saved.exists() else []
    done = {r["stage"] for r in rows}
    sim, run = work / "sim", work / "run"
    star = sim / "particles.star"

    def stage(name: str, key: str, argv: list[str], output: Path, after=None) -> None:
        if key not in args.stages or name in done:
            return
        if output.is_dir():  # what an interrupted sitting left: the stage runs again whole
            shutil.rmtree(output)
        for path in output.parent.glob(f"{output.stem}.*"):  # a file and those beside it (z.npy, z.logvar.npy)
            path.unlink()
        row = run_stage(name, argv, log)
        if after is not None:
            after(row)
        row["particles"] = n
        rows.append(row)
        saved.write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps(row), flush=True)

    stage("simulate", "simulate", ["simulate", str(sim), "--preset", "4-class", "--n-particles", str(n), "-D",
                                   str(args.box), "--n-tilts", str(args.tilts), "--seed", "0",
                                   *([] if args.float32 else ["--float16"])], sim,
          lambda r: r.update(disk_mib=disk_mib(sim)))  # fmt: skip
    stage("backproject", "backproject", ["backproject", str(star), "-o", str(work / "bp")], work / "bp")
    train = ["train_vae", str(star), "-o", str(run), "--zdim", "8", "--epochs", "1", "--n-tilts", str(args.train_tilts),
             "--batch-size", str(args.batch), "--device", "cpu", "--max-steps", str(args.train_steps)]  # fmt: skip
    stage(f"train_vae ({args.train_steps} steps)", "train_vae", train, run, lambda r: r.update(training_pass(run, n)))
    stage(
        "eval_images",
        "eval_images",
        ["eval_images", str(run), str(star), "-o", str(work / "z_all.npy")],
        work / "z_all.npy",
    )
    for k in (20, 100):
        stage(f"analyze k={k}", "analyze", ["analyze", str(run), "--ksample", str(k), "-o", str(work / f"an{k}")],
              work / f"an{k}")  # fmt: skip
    stage("analyze_volumes (every particle)", "analyze_volumes",
          ["analyze_volumes", str(run), "--n-volumes", str(n), "-o", str(work / "vols")], work / "vols")  # fmt: skip
    labels = next((work / "an20").rglob("labels.*"), None)
    if labels is not None:
        stage("filter_star", "filter_star", ["filter_star", str(star), "-o", str(work / "cluster0.star"), "--labels",
                                              str(labels), "--keep", "0"], work / "cluster0.star")  # fmt: skip
    disk = {"stage": "total disk", "particles": n, "disk_mib": disk_mib(work)}
    return [r for r in rows if r["stage"] != "total disk"] + [disk]


def markdown(rows: list[dict], counts: list[int]) -> str:
    stages = list(dict.fromkeys(r["stage"] for r in rows if "wall_s" in r))
    head = "| stage | " + " | ".join(f"{n:,} particles: s, peak MiB" for n in counts) + " |"
    lines = [head, "|---" * (len(counts) + 1) + "|"]
    by = {(r["stage"], r["particles"]): r for r in rows}
    for s in stages:
        cells = []
        for n in counts:
            r = by.get((s, n))
            cells.append("—" if r is None else f"{r['wall_s']:.0f} s, {r['peak_rss_mib']:.0f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    disk = [by.get(("total disk", n), {}).get("disk_mib") for n in counts]
    lines.append("| disk used | " + " | ".join("—" if d is None else f"{d:,.0f} MiB" for d in disk) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--particles", type=int, nargs="+", default=[2000, 5000, 20000])
    p.add_argument("-D", "--box", type=int, default=64)
    p.add_argument("--tilts", type=int, default=41)
    p.add_argument("--train-tilts", type=int, default=11)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=100, help="training steps (the epoch time they imply is given)")
    p.add_argument("--float32", action="store_true", help="float32 stacks (default: float16, half the disk)")
    p.add_argument("--workdir", type=Path, default=Path("bench_output/scale"))
    p.add_argument("--keep", action="store_true", help="keep each count's files (default: removed after it)")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="keep each count's folder and skip the stages it has rows for (implies --keep); rows of "
                        "other counts already in --out are kept")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench_output/scale.json"))
    args = p.parse_args()
    prior = json.loads(args.out.read_text())["rows"] if args.resume and args.out.exists() else []
    rows: list[dict] = [r for r in prior if r["particles"] not in args.particles]  # other counts' rows kept
    for n in args.particles:
        work = args.workdir / f"n{n}"
        if work.exists() and not args.resume:
            shutil.rmtree(work)
        rows += bench_count(n, work, args)
        if not (args.keep or args.resume):
            shutil.rmtree(work)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # written after every count: nothing lost on a stop
        meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "box": args.box,
                "tilts": args.tilts, "train_tilts": args.train_tilts, "batch": args.batch,
                "train_steps": args.train_steps, "stacks": "float32" if args.float32 else "float16"}  # fmt: skip
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    args.particles = sorted({r["particles"] for r in rows})
    done = [n for n in args.particles if any(r["particles"] == n for r in rows)]
    print(markdown(rows, done))
    if len(done) > 1:
        lo, hi = done[0], done[-1]
        by = {(r["stage"], r["particles"]): r for r in rows if "wall_s" in r}
        for (s, n), r in by.items():
            if n == lo and (s, hi) in by:
                t = by[(s, hi)]["wall_s"] / max(r["wall_s"], 0.1)
                m = by[(s, hi)]["peak_rss_mib"] / max(r["peak_rss_mib"], 1)
                print(f"{s}: ×{hi / lo:.1f} particles → time ×{t:.2f}, peak memory ×{m:.2f}")


if __name__ == "__main__":
    main()
