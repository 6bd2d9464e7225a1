"""The public Python API of tomoDRGN. The ``tomodrgn`` command line and the napari plugin call only this module.

Units: Å, e⁻/Å², degrees; poses in RELION ZYZ convention (see :mod:`tomodrgn.physics.pose`).
Long-running calls take a ``progress`` callback or are generators (``iter_train``), so a GUI can run them in a
worker thread and stream results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomodrgn.analysis.convergence import ConvergenceResult, convergence_nn, convergence_vae
from tomodrgn.analysis.latent import kmeans, pca, umap_embed
from tomodrgn.analysis.metrics import cc, fsc, resolution_at, soft_mask
from tomodrgn.analysis.overlay import ParticleOverlay, cluster_colors, particle_overlay, place_volumes
from tomodrgn.analysis.pipeline import AnalysisResult, TruthEvaluation, analyze_run, evaluate_against_truth
from tomodrgn.analysis.run_commands import (
    analyze_volumes_run,
    graph_traversal_for_run,
    pc_traversal_for_run,
    subtomo2chimerax,
)
from tomodrgn.analysis.traversal import Traversal, graph_path, truth_volumes_along
from tomodrgn.analysis.volume_space import VolumeSpaceResult
from tomodrgn.demo import DemoResult, run_demo
from tomodrgn.export.selections import filter_star, read_index_list, write_keep_exclude
from tomodrgn.io.errors import InputError, user_error_message
from tomodrgn.io.mrc import read_mrc, write_mrc
from tomodrgn.io.particles import ParticleSeries, read_particles, write_particle_subset
from tomodrgn.models.encoder import ENCODERS
from tomodrgn.simulate import SimulatedDataset, simulate_dataset, simulate_tomogram
from tomodrgn.training.config import TrainConfig
from tomodrgn.training.evaluate import TrainedModel, load_model, write_volume
from tomodrgn.training.loop import EpochEvent, RunResult, StepEvent, iter_train, train
from tomodrgn.training.run_admin import CleanupPlan, cleanup, view_config
from tomodrgn.training.validation import heldout_scores

__all__ = [
    "CleanupPlan",
    "ConvergenceResult",
    "Traversal",
    "VolumeSpaceResult",
    "analyze_volumes",
    "cleanup",
    "convergence_nn",
    "convergence_vae",
    "graph_path",
    "graph_traversal",
    "heldout_scores",
    "pc_traversal",
    "subtomo2chimerax",
    "truth_volumes_along",
    "view_config",
    "ENCODERS",
    "AnalysisResult",
    "DemoResult",
    "EpochEvent",
    "InputError",
    "ParticleOverlay",
    "ParticleSeries",
    "RunResult",
    "SimulatedDataset",
    "StepEvent",
    "TrainConfig",
    "TrainedModel",
    "TruthEvaluation",
    "analyze",
    "cc",
    "cluster_colors",
    "decode_volumes",
    "embed_particles",
    "evaluate_against_truth",
    "filter_star",
    "fsc",
    "iter_train",
    "kmeans",
    "load_model",
    "particle_overlay",
    "pca",
    "place_volumes",
    "read_index_list",
    "read_mrc",
    "read_particles",
    "resolution_at",
    "run_demo",
    "simulate",
    "simulate_tomogram",
    "soft_mask",
    "train",
    "umap_embed",
    "user_error_message",
    "write_keep_exclude",
    "write_mrc",
    "write_particle_subset",
    "write_volume",
]

simulate = simulate_dataset
analyze = analyze_run
analyze_volumes = analyze_volumes_run
pc_traversal = pc_traversal_for_run
graph_traversal = graph_traversal_for_run


def decode_volumes(
    run_dir: str | Path,
    z: np.ndarray | None,
    outdir: str | Path,
    epoch: int | None = None,
    prefix: str = "vol_",
    device: str = "cpu",
    progress=None,
) -> list[Path]:
    """Decode one volume per row of ``z`` (n, zdim) (None for a homogeneous run) and write ``<prefix>NNN.mrc``
    files (D³, the training pixel size) into ``outdir``; returns their paths."""
    model = load_model(run_dir, epoch, device=device)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n = 1 if z is None else int(np.atleast_2d(z).shape[0])
    paths = []
    for i, vol in enumerate(model.iter_decode(z)):
        paths.append(write_volume(outdir / f"{prefix}{i:03d}.mrc", vol, model.pixel_size))
        if progress is not None:
            progress(i + 1, n)
    return paths


def embed_particles(
    run_dir: str | Path,
    star: str | Path | ParticleSeries | None = None,
    n_tilts: int | None = None,
    epoch: int | None = None,
    sequential: bool = True,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Latent (μ, log σ²) of every particle of ``star`` (default: the training STAR), from ``n_tilts`` tilts each
    (default: all tilts when the run wrote all-tilt latents, else the training value; see ``TrainedModel.embed``)."""
    model = load_model(run_dir, epoch, device=device)
    if star is None:
        star = model.metadata.get("star_path")
        if star is None:
            raise ValueError(f"{run_dir} does not record its training STAR: pass star=")
    return model.embed(star, n_tilts=n_tilts, sequential=sequential)
