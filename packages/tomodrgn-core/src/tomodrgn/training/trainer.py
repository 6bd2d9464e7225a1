"""The trainer behind :func:`tomodrgn.training.loop.iter_train`: run set-up apart from the epoch and its steps.

``Trainer(...)`` checks and builds everything (config, resume state, seeds, particles, model, optimiser, sampler,
weight average, held-out tilts) without writing a file; :meth:`Trainer.start` then readies the run folder and
the log; :meth:`Trainer.epochs` yields the progress events of every epoch. What changes while training runs (epoch,
step, global step, the latents of a stopped epoch, the last good checkpoint) is the small :class:`TrainState`;
everything else is fixed at set-up. One code path for one process and for ``torchrun``: each step batches all
particles × tilts of the local batch, and the loss is normalised by the weight sum all-reduced over processes.
Rank 0 writes the run folder's files (:mod:`tomodrgn.runs.folder`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.data import DataLoader, DistributedSampler

from tomodrgn.data.dataset import collate
from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.io.selection import select_particles
from tomodrgn.kernels import half_lattice
from tomodrgn.runs import checkpoint as ck
from tomodrgn.runs.config import TrainConfig, resumed_config
from tomodrgn.runs.folder import EPOCH_COUNTING, RunFolder
from tomodrgn.runs.model import build_model, dataset_metadata, encode_particles, make_dataset, read_training_series
from tomodrgn.runtime.batch_size import (
    BatchChoice,
    choose_batch_size,
    is_out_of_memory,
    out_of_memory_message,
)
from tomodrgn.runtime.distributed import DistContext, all_gather_objects, all_reduce_sum
from tomodrgn.runtime.huge_pages import allocator_note
from tomodrgn.runtime.mmap_threshold import fix_mmap_threshold, threshold_note
from tomodrgn.runtime.precision import precision_note
from tomodrgn.training.averaging import averaging_horizon, weight_average
from tomodrgn.training.events import EpochEvent, StepEvent
from tomodrgn.training.guard import TrainingDiverged, all_finite, divergence_message, prepare_outdir, remove_created
from tomodrgn.training.loss import beta_at, combine, default_beta
from tomodrgn.training.pose_refinement import pose_refinement
from tomodrgn.training.signal_profile import set_decoder_envelope
from tomodrgn.training.step import batch_forward, particle_noise, training_trial
from tomodrgn.training.validation import evaluate_heldout, heldout_set, write_heldout


@dataclass
class TrainState:
    """What changes while training runs: the position (``epoch``, ``step`` into it, ``global_step``), the latents of
    steps done before a mid-epoch stop (``partial``: index, μ, log σ² lists) and the last good checkpoint's name."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    partial: tuple | None = None
    last_good: str | None = None


@dataclass
class _EpochLatents:
    """Latents seen in the training pass of one epoch (this process's share): particle indices, μ, log σ²."""

    index: list
    mu: list
    logvar: list

    def add(self, index: np.ndarray, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        self.index.append(index)
        self.mu.append(mu.detach().float().cpu().numpy())
        self.logvar.append(logvar.detach().float().cpu().numpy())


class Trainer:
    """One training run (module docstring). ``config`` None: the defaults, or with ``resume`` the saved config;
    with ``resume`` a ``config`` given may change only :data:`~tomodrgn.runs.config.RESUMABLE_OPTIONS`
    (:func:`~tomodrgn.runs.config.resumed_config`)."""

    def __init__(
        self,
        star_or_series: str | Path | ParticleSeries,
        outdir: Path,
        config: TrainConfig | None,
        resume: bool,
        ctx: DistContext,
    ) -> None:
        fix_mmap_threshold()  # freed large buffers leave the resident set (runtime/mmap_threshold.py)
        self.outdir, self.ctx, self.run = Path(outdir), ctx, RunFolder(outdir)
        saved = self._resume_state() if resume else None
        self.config = config = self._resolved_config(config, saved)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.device = ctx.device
        self._set_up_data(star_or_series, saved)
        self._set_up_model(saved)
        self.poses = pose_refinement(config, self.ds, self.device, saved, ctx.distributed)
        self.batch_choice = None
        if config.batch_size == "auto":
            self.batch_choice = self._auto_batch_size()
            self.config = config = dataclasses.replace(config, batch_size=self.batch_choice.local * ctx.world_size)
        if config.batch_size % ctx.world_size:
            raise InputError(f"--batch-size {config.batch_size} is not divisible by the {ctx.world_size} processes")
        self.local_bs = config.batch_size // ctx.world_size
        self.sampler = DistributedSampler(self.ds, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
        self.steps_per_epoch = (len(self.sampler) + self.local_bs - 1) // self.local_bs
        total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        horizon = averaging_horizon(config.weight_average_steps, total_steps)
        self.averaged = weight_average(self.model, horizon)
        if self.averaged is not None and saved is not None and "model_ema" in saved:
            self.averaged.module.load_state_dict(saved["model_ema"])
            self.averaged.n_averaged.fill_(int(saved["ema_updates"]))
        self.evaluated = self.averaged.module if self.averaged is not None else self.model  # saved for evaluation
        D = self.ds.box_size
        self.beta = config.beta if config.beta is not None else default_beta(config.latent_dim, self.ds.n_tilts, D)
        self.warmup = int(round(config.beta_warmup_epochs * self.steps_per_epoch))
        self.meta = dataset_metadata(self.ds, self.voltage)
        self.z_all_tilts = config.latent_dim > 0 and config.resolved_z_all_tilts
        self.ds_all = self.ds.with_tilts(None, sequential=True) if self.z_all_tilts else None
        self.val = (
            heldout_set(self.ds, config.val_tilts, config.seed, config.resolved_z_all_tilts)
            if config.val_tilts
            else None
        )
        self.state = TrainState()
        if saved is not None:
            self.state = TrainState(
                saved["epoch"], saved["step_in_epoch"], saved["global_step"], saved.get("partial_z")
            )
        self.log = None
        self.created: list = []

    # --- set-up (nothing written) ----------------------------------------------------------------------------
    def _resume_state(self) -> dict:
        found = ck.latest_checkpoint(self.outdir) if self.outdir.is_dir() else None
        if found is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint (weights.*.pt) in {self.outdir}")
        return found[1]

    @staticmethod
    def _resolved_config(config: TrainConfig | None, saved: dict | None) -> TrainConfig:
        if saved is None:
            return config if config is not None else TrainConfig()
        resumed = TrainConfig.from_dict(saved["config"])
        return resumed if config is None else resumed_config(resumed, config)

    def _set_up_data(self, star_or_series, saved: dict | None) -> None:
        config = self.config
        norm = tuple(saved["dataset"]["norm"]) if saved is not None else None
        if not isinstance(star_or_series, ParticleSeries):
            star_or_series = read_training_series(star_or_series, config)
        self.ds = make_dataset(select_particles(star_or_series, first=config.first, ind=config.ind), config, norm=norm)
        self.voltage = float(np.median(self.ds.series.voltage))
        self.lattice = half_lattice(self.ds.box_size, self.ds.pixel_size, self.voltage).to(self.device)

    def _set_up_model(self, saved: dict | None) -> None:
        config, device = self.config, self.device
        model = build_model(config, self.ds.box_size, self.ds.n_tilts)
        self.envelope_note = set_decoder_envelope(model, self.ds, config, self.voltage) if saved is None else None
        self.model = model.to(device)
        # the fused AdamW kernel: one pass over all parameters instead of a loop of small ops (~8× faster step on CPU)
        fused = device.type in ("cpu", "cuda")
        self.optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
        if saved is not None:
            model.load_state_dict(saved["model"])
            self.optim.load_state_dict(saved["optimizer"])
            ck.set_rng_state(saved["rng"])  # where the saving run stood: the same batches and noise from here on
        self.ddp = model
        if self.ctx.distributed:
            self.ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.fm = model.decoder.feature_matrix

    def _auto_batch_size(self) -> BatchChoice:
        """``--batch-size auto`` from trial steps on this process's first particles; every process takes the
        smallest choice."""
        ctx, ds = self.ctx, self.ds
        trial = training_trial(self.model, self.fm, self.lattice, ds, self.config, self.device)
        state_bytes = 3 * sum(p.numel() * p.element_size() for p in self.model.parameters())  # Adam moments + average
        choice = choose_batch_size(
            trial, self.device, max(1, len(ds) // ctx.world_size), state_bytes, self.config.memory_limit,
            what=f" at box {ds.box_size} with {ds.n_tilts} tilts",
        )  # fmt: skip
        choice.local = min(all_gather_objects(choice.local, ctx))
        return choice

    # --- the run folder --------------------------------------------------------------------------------------
    def start(self, resume: bool, overwrite: bool) -> None:
        """Everything is checked: ready the run folder (rank 0 writes its config), open the log, write its header."""
        self.created = prepare_outdir(self.outdir, self.config, resume, overwrite, self.ctx)
        self.log = self.run.log.open("a") if self.ctx.is_main else None
        found = ck.list_checkpoints(self.outdir) if self.ctx.is_main else []
        self.state.last_good = found[-1][1].name if found else None
        s, ctx = self.state, self.ctx
        self._log(
            f"# start epoch {s.epoch} step {s.step}: {len(self.ds)} particles, D={self.ds.box_size}, "
            f"{ctx.world_size} process(es), device {self.device}, beta {self.beta:.3g}"
        )
        self._log(f"# {precision_note(self.config.amp, self.device)}; {allocator_note(os.environ)}; {threshold_note()}")
        self._log(f"# {EPOCH_COUNTING}")
        if self.envelope_note is not None:
            self._log(f"# {self.envelope_note}")
        if self.batch_choice is not None:
            self._log(f"# {self.batch_choice.line(ctx.world_size)}")

    def _log(self, line: str) -> None:
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def _diverged(self, what: str, step: int) -> NoReturn:
        """Log and raise :class:`TrainingDiverged`: the run stops before the bad state is used or saved."""
        msg = divergence_message(what, self.state.epoch, step, self.steps_per_epoch, self.config, self.state.last_good)
        self._log(msg)
        raise TrainingDiverged(msg)

    def save(self, epoch: int, step_in_epoch: int, z=None, partial=None) -> Path | None:
        """Checkpoint after ``step_in_epoch`` steps of ``epoch`` (0: the epoch completed), with latents ``z``
        (μ, log σ²) or, for a mid-epoch stop, the ``partial`` latents; rank 0 writes, every rank checks the weights
        first."""
        if not all_finite(self.model):  # a non-finite gradient at the last step made the weights NaN: keep the old
            self._diverged("non-finite weights", self.state.step)
        if not self.ctx.is_main:
            return None
        s = self.state
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optim.state_dict(),
            "epoch": epoch + 1 if step_in_epoch == 0 else epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": s.global_step,
            "rng": ck.rng_state(),
            "config": self.config.to_dict(),
            "dataset": self.meta,
            "feature_matrix": self.fm.detach().cpu(),
            "partial_z": partial,
        }
        if self.averaged is not None:
            ckpt["model_ema"], ckpt["ema_updates"] = self.averaged.module.state_dict(), int(self.averaged.n_averaged)
        if self.poses is not None:
            ckpt["poses"] = self.poses.state_dict()
            if step_in_epoch == 0:
                self.poses.write(self.run.poses(epoch), self.ds)
        path = ck.atomic_torch_save(ckpt, self.run.checkpoint(epoch, step_in_epoch))
        ck.link_latest(path, self.run.weights_link)
        if z is not None:
            ck.link_latest(ck.atomic_np_save(z[0], self.run.z(epoch)), self.run.z_link)
            ck.link_latest(ck.atomic_np_save(z[1], self.run.logvar(epoch)), self.run.logvar_link)
        s.last_good = path.name
        self.created.clear()  # the run has a checkpoint: a later failure keeps its folder
        return path

    # --- training --------------------------------------------------------------------------------------------
    def epochs(self, stop_event: threading.Event | None = None) -> Iterator[StepEvent | EpochEvent]:
        """Train from the current state to ``config.epochs``; stop early (with a checkpoint) when ``stop_event``
        is set. A failure before the first checkpoint removes what the run wrote."""
        try:
            for epoch in range(self.state.epoch, self.config.epochs):
                if self._steps_done():
                    return
                self.state.epoch = epoch
                stopped = yield from self.train_epoch(epoch, stop_event)
                if stopped:
                    return
        except Exception:
            self.close()
            remove_created(self.created)  # failed before its first checkpoint: leave no half-made run behind
            raise
        finally:
            self.close()

    def _loader(self, epoch: int, skip_steps: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        self.ds.set_epoch(epoch)  # tilt draws depend on (seed, epoch, particle) only: exact resume
        return DataLoader(
            self.ds,
            batch_size=self.local_bs,
            sampler=list(self.sampler)[skip_steps * self.local_bs :],
            collate_fn=collate,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def _steps_done(self) -> bool:
        """The run has taken ``config.max_steps`` optimiser steps."""
        return self.config.max_steps is not None and self.state.global_step >= self.config.max_steps

    def _stop_requested(self, stop_event: threading.Event | None) -> bool:
        flag = stop_event is not None and stop_event.is_set()  # set while this step ran or at its event
        if self.ctx.distributed:  # every process must agree
            flag = bool(all_reduce_sum(torch.tensor([float(flag)], device=self.device), self.ctx)[0] > 0)
        return flag

    def step(self, batch: dict, epoch: int) -> tuple[float, float, float, float, torch.Tensor | None, torch.Tensor]:
        """One optimiser step on a local batch: (global loss, mse, kl, global particles, μ, log σ²)."""
        config, s = self.config, self.state
        index = batch["index"].numpy()
        eps = None
        if config.latent_dim:
            eps = particle_noise(config.seed, epoch, index, config.latent_dim).to(self.device)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        refine = self.poses is not None and self.poses.active(epoch)
        if refine:
            batch = self.poses.corrected(batch)
        terms, mu, logvar = batch_forward(self.ddp, self.fm, self.lattice, batch, config, eps, config.backend, refine)
        n_local = terms.wsum.new_tensor(float(terms.n_particles))
        red = all_reduce_sum(torch.stack([terms.wsum.detach(), n_local]), self.ctx)
        b_eff = beta_at(self.beta, s.global_step, self.warmup)
        loss, mse, kl = combine(terms, red[0], red[1], b_eff, self.ctx.world_size)
        if refine:
            loss = loss + self.poses.prior_loss(batch, mse, red[0])
        stats = all_reduce_sum(torch.stack([mse, kl]).detach().float(), self.ctx).cpu().numpy()
        tot = float(stats[0] + b_eff * stats[1])
        if not math.isfinite(tot):  # stop before the bad step changes the weights
            self._diverged(f"loss {tot}", s.step + 1)
        self.optim.zero_grad(set_to_none=True)
        if refine:
            self.poses.optimizer.zero_grad(set_to_none=True)
        with record_function("tomodrgn.backward"):
            loss.backward()
        with record_function("tomodrgn.optimizer"):
            self.optim.step()
            if refine:
                self.poses.optimizer.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.model)
        s.global_step += 1
        s.step += 1
        return tot, float(stats[0]), float(stats[1]), float(red[1]), mu, logvar

    def train_epoch(
        self, epoch: int, stop_event: threading.Event | None = None
    ) -> Generator[StepEvent | EpochEvent, None, bool]:
        """The steps of one epoch (from ``state.step`` on a resume), then its latents, checkpoint, held-out error and
        log line. Returns True when training should stop (``stop_event`` set)."""
        s, config = self.state, self.config
        seen = _EpochLatents([], [], [])
        if s.partial is not None:  # latents of the steps done before a mid-epoch stop
            seen = _EpochLatents(*(list(v) for v in s.partial))
            s.partial = None
        sums = np.zeros(4)  # loss, mse, kl, particles (global)
        t_epoch = t_prev = time.perf_counter()
        batches = iter(self._loader(epoch, s.step))
        stop = False
        while True:
            with record_function("tomodrgn.data"):
                batch = next(batches, None)
            if batch is None:
                break
            index = batch["index"].numpy()
            try:
                tot, mse, kl, n_glob, mu, logvar = self.step(batch, epoch)
            except (RuntimeError, MemoryError) as e:
                if not is_out_of_memory(e):
                    raise
                msg = out_of_memory_message(
                    self.device, config.batch_size, self.ctx.world_size, self.ds.box_size, self.ds.n_tilts
                )
                self._log(msg)
                raise InputError(msg) from None
            if mu is not None:
                seen.add(index, mu, logvar)
            now = time.perf_counter()
            dt, t_prev = now - t_prev, now
            sums += [tot * n_glob, mse * n_glob, kl * n_glob, n_glob]
            yield StepEvent(epoch, s.step, s.global_step, self.steps_per_epoch, tot, mse, kl, n_glob / dt)
            stop = self._stop_requested(stop_event)
            if stop and s.step < self.steps_per_epoch:
                gathered = all_gather_objects((seen.index, seen.mu, seen.logvar), self.ctx)
                path = self.save(epoch, s.step, partial=tuple([x for g in gathered for x in g[j]] for j in range(3)))
                self._log(f"stopped at epoch {epoch} step {s.step}/{self.steps_per_epoch}: {path.name}")
                return True
            if self._steps_done():
                self._log(
                    f"--max-steps {config.max_steps} reached at epoch {epoch} step {s.step}/{self.steps_per_epoch}"
                )
                break
        secs = time.perf_counter() - t_epoch
        last = epoch == config.epochs - 1 or self._steps_done()
        write = last or (epoch + 1) % config.checkpoint_every == 0
        z = self.latents(seen, write) if config.latent_dim else None
        path = self.save(epoch, 0, z) if write else None
        n = max(sums[3], 1.0)
        ev = EpochEvent(epoch, *(float(v) for v in sums[:3] / n), float(sums[3] / max(secs, 1e-9)), secs, path,
                        config.epochs, latent=config.latent_dim > 0)  # fmt: skip
        if self.val is not None:
            ev.val_loss = self.validate(epoch, z, write)
        self._log(
            f"epoch {epoch} loss {ev.loss:.6f} mse {ev.mse:.6f} kl {ev.kl:.4f} beta {self.beta:.3g} "
            f"particles/s {ev.particles_per_s:.1f} time {secs:.1f}s"
            + (f" val_loss {ev.val_loss:.6f}" if ev.val_loss is not None else "")
            + (f" -> {path.name}" if path else "")
        )
        yield ev
        if stop and not last:
            if path is None:
                self.save(epoch, 0, z)
            return True
        s.step = 0
        return self._steps_done()

    def latents(self, seen: _EpochLatents, write: bool) -> tuple[np.ndarray, np.ndarray]:
        """(μ, log σ²) of every particle after an epoch: from an encoder pass over all tilts (``z_all_tilts``, when a
        checkpoint is written), else from the epoch's training pass; gathered from every process."""
        n, zdim = len(self.ds), self.config.latent_dim
        if write and self.z_all_tilts:
            shard = list(DistributedSampler(self.ds_all, self.ctx.world_size, self.ctx.rank, shuffle=False))
            i, m, lv = encode_particles(
                self.evaluated, self.ds_all, shard, self.lattice, self.config, self.device, self._latent_batch()
            )
            seen = _EpochLatents([i], [m], [lv])
        z_mu = np.zeros((n, zdim), np.float32)
        z_lv = np.zeros_like(z_mu)
        for idxs, mus, lvs in all_gather_objects((seen.index, seen.mu, seen.logvar), self.ctx):
            for i, m, lv in zip(idxs, mus, lvs):
                z_mu[i], z_lv[i] = m, lv
        return z_mu, z_lv

    def _latent_batch(self) -> int:
        """Particles per batch of the all-tilt encoder pass: as many tilt images as four training batches (the pass is
        forward only), not 4 × batch particles of every tilt (at D = 64, 41 tilts, batch 32 of 11: 5,248 images, 34
        particles now). Its memory over the whole pass is bounded by the fixed mmap threshold
        (runtime/mmap_threshold.py), without which it grew batch after batch whatever the batch."""
        return max(1, 4 * self.local_bs * self.ds.n_tilts // self.ds_all.n_tilts)  # n_tilts ≥ 1 (dataset)

    def validate(self, epoch: int, z: tuple | None, write: bool) -> float:
        """The held-out tilts' error: every process takes its share, the sums are all-reduced; rank 0 writes the
        per-particle table when a checkpoint is written."""
        mu_all = z[0] if z is not None and write and self.z_all_tilts else None  # from the same tilts
        val_loss, table = evaluate_heldout(
            self.evaluated, self.val, self.lattice, self.config, self.device, self.ctx, write, mu_all=mu_all
        )
        if self.ctx.is_main and table is not None:
            write_heldout(table, self.outdir, epoch)
        return val_loss
