"""The end-to-end main job on simulated data: simulate → train (VAE) → analyse → compare with ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomodrgn.analysis.latent import kmeans
from tomodrgn.analysis.pipeline import AnalysisResult, TruthEvaluation, analyze_run, evaluate_against_truth
from tomodrgn.demo_defaults import DEMO_DEFAULTS, DEMO_TRAIN_DEFAULTS
from tomodrgn.io.mrc import read_mrc
from tomodrgn.runs.config import TrainConfig
from tomodrgn.runs.folder import RunFolder
from tomodrgn.runs.trained import load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training.loop import train


@dataclass
class DemoResult:
    outdir: Path
    star_path: Path
    run_dir: Path
    ari: float
    confusion: np.ndarray
    true_labels: list
    cc_per_class: dict
    analysis: AnalysisResult | None
    seconds: dict = field(default_factory=dict)
    snr: float | None = None
    n_particles: int | None = None

    def summary(self) -> str:
        """Human-readable summary: ARI, confusion matrix, CC per class, run time and where the outputs are."""
        lines = [
            "tomoDRGN demo — 4-class simulated dataset",
            f"  data: {self.n_particles} particles, SNR {self.snr} (0° image)",
            f"  adjusted Rand index (k-means k={len(self.true_labels)} on z vs truth): {self.ari:.3f}",
            "  confusion matrix (rows: true class, columns: matched cluster):",
        ]
        lines += ["    " + " ".join(f"{v:5d}" for v in row) for row in self.confusion]
        lines.append("  real-space CC of each class's decoded volume with its ground truth:")
        lines += [f"    class {t}: {c:.3f}" for t, c in self.cc_per_class.items()]
        lines.append("  run time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()))
        lines.append(f"  data:     {self.star_path}")
        lines.append(f"  training: {self.run_dir}")
        if self.analysis is not None:
            lines.append(f"  analysis: {self.analysis.outdir} (report: {self.analysis.report})")
        return "\n".join(lines)


def run_demo(
    outdir: str | Path = "demo_output",
    preset: str = "4-class",
    n_particles: int = DEMO_DEFAULTS["n_particles"],
    box_size: int = DEMO_DEFAULTS["box_size"],
    epochs: int = DEMO_DEFAULTS["epochs"],
    n_tilts: int = DEMO_DEFAULTS["n_tilts"],
    snr: float = DEMO_DEFAULTS["snr"],
    seed: int = 0,
    analyze: bool = True,
    progress: bool = True,
    config_overrides: dict | None = None,
) -> DemoResult:
    """Simulate ``preset``, train a VAE on it, analyse the run and compare the clusters with the ground truth.

    Training uses :data:`DEMO_TRAIN_DEFAULTS` updated with ``config_overrides`` (any :class:`TrainConfig` field).
    """
    outdir = Path(outdir)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    sim = simulate_dataset(
        outdir / "data",
        preset=preset,
        n_particles=n_particles,
        box_size=box_size,
        n_tilts=n_tilts,
        snr=snr,
        seed=seed,
        overwrite=True,  # the demo's own data folder: a rerun makes the same dataset again
    )
    times["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    config = TrainConfig(mode="vae", epochs=epochs, seed=seed, **{**DEMO_TRAIN_DEFAULTS, **(config_overrides or {})})
    run_dir = outdir / "train_vae"
    train(sim.star_path, run_dir, config, resume=RunFolder(run_dir).config.exists(), progress=progress)
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = load_model(run_dir)
    z, _ = RunFolder(run_dir).load_z()
    true_labels = np.asarray(sim.labels)
    n_classes = len(np.unique(true_labels))
    pred, centres = kmeans(z, n_classes, seed=seed)
    vols_pred = model.decode(centres.astype(np.float32))
    vols_true = [read_mrc(p)[0] for p in sim.volume_paths]
    truth: TruthEvaluation = evaluate_against_truth(true_labels, pred, vols_pred, vols_true)
    times["evaluate"] = time.perf_counter() - t0

    analysis = None
    if analyze:
        t0 = time.perf_counter()
        analysis = analyze_run(run_dir, k=min(20, n_particles), umap=True, overwrite=True)  # the demo's own folder
        times["analyze"] = time.perf_counter() - t0
    return DemoResult(
        outdir=outdir,
        star_path=sim.star_path,
        run_dir=run_dir,
        ari=truth.ari,
        confusion=np.asarray(truth.confusion.matrix),
        true_labels=np.unique(true_labels).tolist(),
        cc_per_class=truth.cc_per_class,
        analysis=analysis,
        seconds=times,
        snr=snr,
        n_particles=n_particles,
    )
