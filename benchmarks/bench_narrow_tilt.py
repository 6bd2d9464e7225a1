"""Heterogeneity on small, narrow-tilt data: k-means (k = 2) ARI of z vs the true labels by epoch and by second.

The regime of the project's issue (a published-tomoDRGN comparison on real-like data): 144 particles of two assembly
states (``2-class`` preset, 72 each), D = 32 (13.1 Å/px), 10 tilts per particle within ±15° (3° steps,
dose-symmetric), 0–2 of them dropped per particle (8–10 tilts), 2.5 e⁻/Å² per tilt, 90° phase plate, SNR 0.06,
in-plane shifts 1.5 px rms. Each case is a :class:`TrainConfig` override on a common base (fixed seed); the table
and a JSON (settings → ARI per epoch, seconds per epoch) are written.

    python benchmarks/bench_narrow_tilt.py --out bench_output/narrow.json --cases default per-tilt lr1e-3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tomodrgn import api
from tomodrgn.runs import TrainConfig
from tomodrgn.training import iter_train
from tomodrgn.training.loop import EpochEvent

NARROW_TILT = dict(
    preset="2-class",
    n_particles=144,
    box_size=32,
    n_tilts=10,
    max_tilt=15.0,
    tilt_step=3.0,
    dose_per_tilt=2.5,
    snr=0.06,
    phase_shift=90.0,
    defocus_range=(5000.0, 15000.0),
    drop_tilts=2,
)

# name → TrainConfig overrides (on top of BASE); "default" is the library's defaults (reference-frame encoder,
# lr 1e-3, real-space window on). The other cases change one factor from the defaults.
BASE = dict(zdim=8, epochs=30, batch_size=8, seed=42)
CASES: dict[str, dict] = {
    "default": {},
    "no-window": dict(window=False),
    "lr2e-4": dict(lr=2e-4, window=False),  # the defaults before this benchmark
    "lr2e-4-bs2": dict(lr=2e-4, window=False, batch_size=2),
    "per-tilt": dict(encoder="per-tilt", n_tilts=8),
    "per-tilt-published-arch": dict(
        encoder="per-tilt", n_tilts=8, enc_arch_a="64x2", embed_dim=64, enc_arch_b="32x4", zdim=2
    ),
    "beta-published": dict(beta="published"),
    "zdim2": dict(zdim=2),
    "enc_mask4": dict(enc_mask=4),
}


def simulate(workdir: Path, seed: int = 0, **overrides) -> api.SimulatedDataset:
    return api.simulate(workdir / "data", seed=seed, **{**NARROW_TILT, **overrides})


def kmeans_ari(z: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
    return float(adjusted_rand_score(labels, pred))


def run_case(sim: api.SimulatedDataset, outdir: Path, overrides: dict, epochs: int | None = None) -> dict:
    """Train one case; ARI of k-means(z) per epoch, cumulative training seconds per epoch."""
    opts = {**BASE, **overrides}
    if epochs is not None:
        opts["epochs"] = epochs
    if opts.get("beta") == "published":  # 1/zdim on a per-pixel-mean loss (published tomoDRGN's normalisation)
        opts["beta"] = 1.0 / (opts["zdim"] * 10 * sim.box_size**2)
    config = TrainConfig(**opts, device="cpu")
    labels = np.loadtxt(sim.labels_path).astype(int)
    k = len(np.unique(labels))
    ari, seconds = [], []
    t0, train_s = time.perf_counter(), 0.0
    for ev in iter_train(sim.star_path, outdir, config):
        if isinstance(ev, EpochEvent):
            train_s += time.perf_counter() - t0
            z = np.load(outdir / f"z.{ev.epoch}.npy")
            ari.append(kmeans_ari(z, labels, k))
            seconds.append(round(train_s, 2))
            t0 = time.perf_counter()
    return {"overrides": overrides, "ari": [round(a, 3) for a in ari], "seconds": seconds}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("bench_output/narrow_tilt"))
    p.add_argument("--out", type=Path, default=Path("bench_output/narrow_tilt.json"))
    p.add_argument("--cases", nargs="+", default=["default", "per-tilt"], choices=sorted(CASES))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-particles", type=int, default=NARROW_TILT["n_particles"])
    p.add_argument("-D", type=int, default=NARROW_TILT["box_size"], help="box size (pixels; the box stays 419.2 Å)")
    p.add_argument("--snr", type=float, default=NARROW_TILT["snr"])
    p.add_argument("--sim-seed", type=int, default=0)
    a = p.parse_args(argv)
    sim = simulate(a.workdir, seed=a.sim_seed, n_particles=a.n_particles, box_size=a.D, snr=a.snr)
    results = {}
    for name in a.cases:
        r = run_case(sim, a.workdir / name, CASES[name], a.epochs)
        results[name] = r
        n = len(r["ari"])
        marks = [e for e in (10, 20, 30, 40) if e <= n] or [n]
        print(
            f"{name:28s} "
            + " ".join(f"e{e}:{r['ari'][e - 1]:.2f}" for e in marks)
            + f"  {r['seconds'][-1] / n:.1f} s/epoch",
            flush=True,
        )
    out = {
        "regime": {**NARROW_TILT, "n_particles": a.n_particles, "box_size": a.D, "snr": a.snr, "sim_seed": a.sim_seed},
        "base": BASE,
        "runs": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
