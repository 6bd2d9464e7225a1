"""The public Python API of tomoDRGN: the ``tomodrgn`` command line and the napari plugin call only this module.

Units: Å, e⁻/Å², degrees; poses in RELION ZYZ convention (see :mod:`tomodrgn.physics.pose`). Long-running calls take
a ``progress`` callback or are generators (``iter_train``), so a GUI can run them in a worker thread and stream
results. Names are imported on first use, so ``import tomodrgn.api`` is cheap (the CLI parses its options and
reports their errors before torch is loaded).

Groups (``help(tomodrgn.api)`` lists them, :data:`GROUPS` holds them):

- particles and maps: reading, selecting, writing particle sets and MRC maps;
- simulation: ground-truth datasets, tomograms, the demo;
- reconstruction and checks: back-projection, FSC / CC, the hand and contrast check against a reference;
- training: the configuration, the run, its folder and events;
- trained models: loading, decoding volumes, embedding particles;
- analysis: the standard analysis, volume space, traversals, convergence, ChimeraX placement, movies;
- particles in tomograms: the overlay of poses on tomograms (used by the plugin);
- front ends: error and warning reporting and output checks shared by the CLI and the plugin.
"""

from __future__ import annotations

import importlib

#: public name → (module, attribute there), by group
GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "particles and maps": {
        "InputError": ("tomodrgn.io.errors", "InputError"),
        "ParticleSeries": ("tomodrgn.io.particles", "ParticleSeries"),
        "collect_one_stack": ("tomodrgn.io.downsample", "collect_one_stack"),
        "downsample_particles": ("tomodrgn.io.downsample", "downsample_particles"),
        "export_poses": ("tomodrgn.export.poses", "export_poses"),
        "filter_star": ("tomodrgn.export.selections", "filter_star"),
        "filter_star_rows": ("tomodrgn.export.selections", "filter_star_rows"),
        "split_star_by_tomogram": ("tomodrgn.export.selections", "split_star_by_tomogram"),
        "read_index_list": ("tomodrgn.io.index_lists", "read_index_list"),
        "read_labels": ("tomodrgn.io.index_lists", "read_labels"),
        "read_latents": ("tomodrgn.io.latents", "read_latents"),
        "read_mrc": ("tomodrgn.io.mrc", "read_mrc"),
        "read_particles": ("tomodrgn.io.particles", "read_particles"),
        "star_flavour": ("tomodrgn.io.particles", "star_flavour"),
        "read_volume_series": ("tomodrgn.io.volume_series", "read_volume_series"),
        "select_particles": ("tomodrgn.io.selection", "select_particles"),
        "write_latents_pickle": ("tomodrgn.io.latents", "write_latents_pickle"),
        "write_mrc": ("tomodrgn.io.mrc", "write_mrc"),
        "write_particle_subset": ("tomodrgn.io.particles", "write_particle_subset"),
    },
    "simulation": {
        "DEMO_DEFAULTS": ("tomodrgn.demo_defaults", "DEMO_DEFAULTS"),
        "DemoResult": ("tomodrgn.demo", "DemoResult"),
        "SimulatedDataset": ("tomodrgn.simulate.dataset", "SimulatedDataset"),
        "TruthEvaluation": ("tomodrgn.analysis.pipeline", "TruthEvaluation"),
        "evaluate_against_truth": ("tomodrgn.analysis.pipeline", "evaluate_against_truth"),
        "run_demo": ("tomodrgn.demo", "run_demo"),
        "simulate": ("tomodrgn.simulate.dataset", "simulate_dataset"),
        "simulate_tomogram": ("tomodrgn.simulate.tomogram", "simulate_tomogram"),
        "write_relion5": ("tomodrgn.simulate.relion5", "write_relion5"),
    },
    "reconstruction and checks": {
        "BackprojectResult": ("tomodrgn.reconstruct.pipeline", "BackprojectResult"),
        "ReferenceCheck": ("tomodrgn.reconstruct.reference_check", "ReferenceCheck"),
        "backproject": ("tomodrgn.reconstruct.pipeline", "backproject"),
        "cc": ("tomodrgn.analysis.metrics", "cc"),
        "check_against_reference": ("tomodrgn.reconstruct.reference_check", "check_against_reference"),
        "flip_hand": ("tomodrgn.physics.hand", "flip_hand"),
        "fsc": ("tomodrgn.analysis.metrics", "fsc"),
        "load_reference": ("tomodrgn.reconstruct.reference_check", "load_reference"),
        "resolution_at": ("tomodrgn.analysis.metrics", "resolution_at"),
        "soft_mask": ("tomodrgn.analysis.metrics", "soft_mask"),
    },
    "training": {
        "CleanupPlan": ("tomodrgn.runs.admin", "CleanupPlan"),
        "ENCODERS": ("tomodrgn.models.names", "ENCODERS"),
        "EpochEvent": ("tomodrgn.training.events", "EpochEvent"),
        "RunFolder": ("tomodrgn.runs.folder", "RunFolder"),
        "EPOCH_COUNTING": ("tomodrgn.runs.folder", "EPOCH_COUNTING"),
        "RunResult": ("tomodrgn.training.events", "RunResult"),
        "StepEvent": ("tomodrgn.training.events", "StepEvent"),
        "TrainConfig": ("tomodrgn.runs.config", "TrainConfig"),
        "TrainingDiverged": ("tomodrgn.training.guard", "TrainingDiverged"),
        "cleanup": ("tomodrgn.runs.admin", "cleanup"),
        "heldout_scores": ("tomodrgn.training.validation", "heldout_scores"),
        "iter_train": ("tomodrgn.training.loop", "iter_train"),
        "train": ("tomodrgn.training.loop", "train"),
        "training_particles": ("tomodrgn.runs.particles", "training_particles"),
        "view_config": ("tomodrgn.runs.admin", "view_config"),
    },
    "trained models": {
        "TrainedModel": ("tomodrgn.runs.trained", "TrainedModel"),
        "check_run_against_reference": ("tomodrgn.analysis.run_commands", "check_run_against_reference"),
        "reference_for_training": ("tomodrgn.analysis.run_commands", "reference_for_training"),
        "decode_volumes": ("tomodrgn.analysis.run_commands", "decode_volumes"),
        "postprocess_volume": ("tomodrgn.analysis.run_commands", "postprocess_volume"),
        "embed_particles": ("tomodrgn.analysis.run_commands", "embed_particles"),
        "load_model": ("tomodrgn.runs.trained", "load_model"),
    },
    "analysis": {
        "AnalysisResult": ("tomodrgn.analysis.pipeline", "AnalysisResult"),
        "ConvergenceResult": ("tomodrgn.analysis.convergence", "ConvergenceResult"),
        "Movie": ("tomodrgn.export.movie", "Movie"),
        "Traversal": ("tomodrgn.analysis.traversal", "Traversal"),
        "VolumeSpaceResult": ("tomodrgn.analysis.volume_space", "VolumeSpaceResult"),
        "analyze": ("tomodrgn.analysis.pipeline", "analyze_run"),
        "analyze_volumes": ("tomodrgn.analysis.run_commands", "analyze_volumes_run"),
        "convergence_nn": ("tomodrgn.analysis.convergence", "convergence_nn"),
        "convergence_vae": ("tomodrgn.analysis.convergence", "convergence_vae"),
        "graph_path": ("tomodrgn.analysis.traversal", "graph_path"),
        "graph_traversal": ("tomodrgn.analysis.run_commands", "graph_traversal_for_run"),
        "kmeans": ("tomodrgn.analysis.latent", "kmeans"),
        "latent_pc_traversal": ("tomodrgn.analysis.latent", "pc_traversal"),
        "path_between": ("tomodrgn.analysis.latent", "path_between"),
        "pc_traversal": ("tomodrgn.analysis.run_commands", "pc_traversal_for_run"),
        "pca": ("tomodrgn.analysis.latent", "pca"),
        "render_movie": ("tomodrgn.export.movie", "render_movie"),
        "render_surface": ("tomodrgn.export.render", "render_surface"),
        "subtomo2chimerax": ("tomodrgn.analysis.run_commands", "subtomo2chimerax"),
        "tomodrgn_mapback": ("tomodrgn.analysis.run_commands", "tomodrgn_mapback"),
        "umap_embed": ("tomodrgn.analysis.latent", "umap_embed"),
        "volume_files": ("tomodrgn.analysis.volume_space", "volume_files"),
        "view_rotation": ("tomodrgn.export.render", "view_rotation"),
        "volume_movie": ("tomodrgn.export.movie", "volume_movie"),
        "write_movie": ("tomodrgn.export.movie", "write_movie"),
    },
    "particles in tomograms": {
        "COLOR_QUANTITIES": ("tomodrgn.analysis.overlay", "COLOR_QUANTITIES"),
        "ClusterSurface": ("tomodrgn.analysis.surfaces", "ClusterSurface"),
        "DEFAULT_SIGMA": ("tomodrgn.analysis.surfaces", "DEFAULT_SIGMA"),
        "Mesh": ("tomodrgn.analysis.surfaces", "Mesh"),
        "ParticleOverlay": ("tomodrgn.analysis.overlay", "ParticleOverlay"),
        "cluster_colors": ("tomodrgn.analysis.overlay", "cluster_colors"),
        "iso_surface": ("tomodrgn.analysis.surfaces", "iso_surface"),
        "particle_overlay": ("tomodrgn.analysis.overlay", "particle_overlay"),
        "particle_quantity": ("tomodrgn.analysis.overlay", "particle_quantity"),
        "particles_of_points": ("tomodrgn.analysis.overlay", "particles_of_points"),
        "place_volumes": ("tomodrgn.analysis.overlay", "place_volumes"),
        "points_of_particles": ("tomodrgn.analysis.overlay", "points_of_particles"),
        "populated_surfaces": ("tomodrgn.analysis.surfaces", "populated_surfaces"),
        "surface_threshold": ("tomodrgn.analysis.surfaces", "surface_threshold"),
        "volume_beside": ("tomodrgn.analysis.overlay", "volume_beside"),
        "volume_translate": ("tomodrgn.analysis.overlay", "volume_translate"),
    },
    "front ends": {
        "check_output_file": ("tomodrgn.io.output_dir", "check_output_file"),
        "check_run_dir": ("tomodrgn.runs.create", "check_run_dir"),
        "fix_mmap_threshold": ("tomodrgn.runtime.mmap_threshold", "fix_mmap_threshold"),
        "resolve_device": ("tomodrgn.runtime.device", "resolve_device"),
        "restart_with_huge_pages": ("tomodrgn.runtime.huge_pages", "restart_with_huge_pages"),
        "user_error_message": ("tomodrgn.io.errors", "user_error_message"),
        "warnings_to": ("tomodrgn.io.user_warnings", "warnings_to"),
    },
}
_WHERE = {name: where for group in GROUPS.values() for name, where in group.items()}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _WHERE[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return [*__all__, "GROUPS"]
