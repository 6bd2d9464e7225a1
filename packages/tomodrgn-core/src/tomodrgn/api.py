"""The public Python API of tomoDRGN. The ``tomodrgn`` command line and the napari plugin call only this module.

Units: Å, e⁻/Å², degrees; poses in RELION ZYZ convention (see :mod:`tomodrgn.physics.pose`).
Long-running calls take a ``progress`` callback or are generators (``iter_train``), so a GUI can run them in a
worker thread and stream results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomodrgn.analysis.convergence import ConvergenceResult, convergence_nn, convergence_vae
from tomodrgn.analysis.latent import kmeans, path_between, pca, umap_embed
from tomodrgn.analysis.latent import pc_traversal as latent_pc_traversal
from tomodrgn.analysis.metrics import cc, fsc, resolution_at, soft_mask
from tomodrgn.analysis.overlay import (
    COLOR_QUANTITIES,
    ParticleOverlay,
    cluster_colors,
    particle_overlay,
    particle_quantity,
    particles_of_points,
    place_volumes,
    points_of_particles,
    volume_beside,
    volume_translate,
)
from tomodrgn.analysis.pipeline import AnalysisResult, TruthEvaluation, analyze_run, evaluate_against_truth
from tomodrgn.analysis.run_commands import (
    analyze_volumes_run,
    check_run_against_reference,
    graph_traversal_for_run,
    pc_traversal_for_run,
    subtomo2chimerax,
)
from tomodrgn.analysis.traversal import Traversal, graph_path, truth_volumes_along
from tomodrgn.analysis.volume_space import VolumeSpaceResult
from tomodrgn.demo import DemoResult, run_demo
from tomodrgn.export.selections import filter_star, write_keep_exclude
from tomodrgn.io.downsample import downsample_particles
from tomodrgn.io.errors import InputError, user_error_message
from tomodrgn.io.index_lists import read_index_list, read_labels
from tomodrgn.io.mrc import read_mrc, write_mrc
from tomodrgn.io.output_dir import check_output_dir, check_output_file, prepare_output_dir
from tomodrgn.io.particles import ParticleSeries, read_particles, write_particle_subset
from tomodrgn.io.selection import read_particles_checked, select_particles
from tomodrgn.io.user_warnings import warning_line, warnings_to
from tomodrgn.models.names import ENCODERS
from tomodrgn.reconstruct.pipeline import BackprojectResult, backproject
from tomodrgn.reconstruct.reference_check import ReferenceCheck, check_against_reference, load_reference
from tomodrgn.simulate import SimulatedDataset, simulate_dataset, simulate_tomogram, write_relion5
from tomodrgn.training.config import TrainConfig
from tomodrgn.training.evaluate import TrainedModel, load_model, write_volume
from tomodrgn.training.guard import TrainingDiverged
from tomodrgn.training.loop import EpochEvent, RunResult, StepEvent, iter_train, train
from tomodrgn.training.run_admin import CleanupPlan, cleanup, view_config
from tomodrgn.training.run_dir import prepare_run_dir
from tomodrgn.training.run_folder import RunFolder
from tomodrgn.training.run_particles import apply_run_selection, training_particles
from tomodrgn.training.validation import heldout_scores

__all__ = [
    "CleanupPlan",
    "ConvergenceResult",
    "Traversal",
    "VolumeSpaceResult",
    "analyze_volumes",
    "check_against_reference",
    "check_run_against_reference",
    "load_reference",
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
    "COLOR_QUANTITIES",
    "ENCODERS",
    "AnalysisResult",
    "BackprojectResult",
    "ReferenceCheck",
    "RunFolder",
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
    "TrainingDiverged",
    "TruthEvaluation",
    "analyze",
    "backproject",
    "cc",
    "cluster_colors",
    "decode_volumes",
    "downsample_particles",
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
    "prepare_run_dir",
    "check_output_dir",
    "check_output_file",
    "prepare_output_dir",
    "apply_run_selection",
    "training_particles",
    "read_index_list",
    "read_labels",
    "read_mrc",
    "read_particles",
    "read_particles_checked",
    "resolution_at",
    "run_demo",
    "select_particles",
    "simulate",
    "simulate_tomogram",
    "soft_mask",
    "train",
    "umap_embed",
    "user_error_message",
    "warning_line",
    "warnings_to",
    "write_keep_exclude",
    "write_mrc",
    "write_particle_subset",
    "write_relion5",
    "write_volume",
    "volume_translate",
    "volume_beside",
    "points_of_particles",
    "particles_of_points",
    "particle_quantity",
    "latent_pc_traversal",
    "path_between",
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
    overwrite: bool = False,
    flip_hand: bool = False,
) -> list[Path]:
    """Decode one volume per row of ``z`` (n, zdim) (None for a homogeneous run) and write ``<prefix>NNN.mrc``
    files (D³, the training pixel size) into ``outdir`` (new or empty unless ``overwrite``); returns their paths.
    ``flip_hand``: write them mirrored (``docs/architecture.md``, "Hand")."""
    check_output_dir(outdir, overwrite)
    model = load_model(run_dir, epoch, device=device, flip_hand=flip_hand)
    outdir = prepare_output_dir(outdir, overwrite)
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
    first: int | None = None,
    ind: str | Path | np.ndarray | None = None,
    tomograms_star: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent (μ, log σ²) of every particle of ``star`` (default: the run's training particles, its ``--first`` /
    ``--ind`` selection applied, :func:`training_particles`), from ``n_tilts`` tilts each
    (default: all tilts when the run wrote all-tilt latents, else the training value; see ``TrainedModel.embed``).
    ``first`` / ``ind``: only the first N particles / those of an index list (:func:`select_particles`).
    ``tomograms_star``: the tomograms STAR of a 2-D stack set given by its particles STAR ``star`` (the training
    STAR, given again, is read with the run's)."""
    if n_tilts is not None and (isinstance(n_tilts, bool) or n_tilts < 1):
        raise InputError(f"--n-tilts must be ≥ 1, got {n_tilts}")
    model = load_model(run_dir, epoch, device=device)
    if star is None:
        star = training_particles(model)
    elif not isinstance(star, ParticleSeries):
        trained_on = model.metadata.get("star_path")
        if tomograms_star is None and trained_on and Path(star).absolute() == Path(trained_on).absolute():
            tomograms_star = model.config.tomograms_star
        star = read_particles_checked(star, pixel_size=model.config.pixel_size, tomograms_star=tomograms_star)
    return model.embed(select_particles(star, first=first, ind=ind), n_tilts=n_tilts, sequential=sequential)
