"""The particles a training run was trained on, in the order of its latents (``z.npy`` row i = particle i).

A run trained with ``--first N`` / ``--ind FILE`` records them in its config (``first`` / ``ind``, an absolute
path); its checkpoint records the training STAR (``star_path``). Everything that pairs the run's latents with STAR
rows (``tomodrgn analyze`` filtered STARs, the analysis commands, ChimeraX placement, embedding, the napari
reader) reads the particles through :func:`training_particles`, so a subset run never meets a row-count mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries, read_particles
from tomodrgn.io.selection import select_particles
from tomodrgn.runs import checkpoint as ck


def _as_dict(config: Any) -> dict:
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def apply_run_selection(series: ParticleSeries, config: Any) -> ParticleSeries:
    """``series`` restricted to the run's ``first`` / ``ind`` selection (``config``: a :class:`TrainConfig` or its
    dict, as in ``config.json``); ``series`` itself when the run used every particle."""
    cfg = _as_dict(config)
    return select_particles(series, first=cfg.get("first"), ind=cfg.get("ind"))


def run_selection_note(config: Any) -> str:
    """``"--first N"`` / ``"--ind FILE"`` of a run, or "" when it used every particle (for error messages)."""
    cfg = _as_dict(config)
    if cfg.get("first") is not None:
        return f"--first {cfg['first']}"
    if cfg.get("ind") is not None:
        return f"--ind {cfg['ind']}"
    return ""


def training_particles(run: Any, epoch: int | None = None) -> ParticleSeries:
    """The training particles of ``run`` (a run folder or a :class:`~tomodrgn.runs.trained.TrainedModel`):
    the STAR recorded in its checkpoint (stack pixel size as in training), restricted to the run's ``--first`` /
    ``--ind`` selection. Particle i is the one of latent row i. ``epoch``: checkpoint to read (default latest)."""
    if isinstance(run, (str, Path)):
        state = ck.load_checkpoint(ck.find_checkpoint(run, epoch))
        config, meta, where = dict(state["config"]), dict(state.get("dataset") or {}), Path(run)
    else:
        config, meta, where = run.config.to_dict(), dict(run.metadata), Path(run.path).parent
    star = meta.get("star_path")
    if not star:
        raise InputError(f"{where} does not record its training STAR: give the STAR file")
    series = read_particles(
        star,
        pixel_size=config.get("pixel_size"),
        tomograms_star=config.get("tomograms_star"),
        datadir=config.get("datadir"),
        ctf="unused",  # the run's own CTF choice applies where its images are used (runs.model.make_dataset)
        dose="unused",
    )
    return apply_run_selection(series, config)
