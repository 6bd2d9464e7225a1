"""The training loop: a generator of progress events (for a GUI thread), and ``train`` (tqdm) on top of it.

One code path for one process and for ``torchrun`` (see :mod:`tomodrgn.training.distributed`). Each step batches
all particles × tilts of the (local) batch: the lattice-mask step keeps the dose-allowed half-lattice points, the
decoder is evaluated once on all of them with z gathered per point, and the loss is normalised by the weight sum
all-reduced over processes. Rank 0 writes ``config.json``, ``train.log``, checkpoints and latents.
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.data import DataLoader, DistributedSampler

from tomodrgn.data.dataset import collate
from tomodrgn.io.errors import InputError
from tomodrgn.io.particles import ParticleSeries
from tomodrgn.io.selection import read_particles_checked, select_particles
from tomodrgn.kernels import half_lattice
from tomodrgn.training import checkpoint as ck
from tomodrgn.training.averaging import averaging_horizon, weight_average
from tomodrgn.training.config import TrainConfig
from tomodrgn.training.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown,
)
from tomodrgn.training.guard import TrainingDiverged, all_finite, divergence_message, prepare_outdir, remove_created
from tomodrgn.training.loss import beta_at, combine, default_beta
from tomodrgn.training.run_dir import check_run_dir
from tomodrgn.training.run_folder import RunFolder
from tomodrgn.training.setup import build_model, dataset_metadata, make_dataset, set_decoder_envelope
from tomodrgn.training.step import batch_forward, encode_particles, particle_noise
from tomodrgn.training.validation import evaluate_heldout, heldout_set, write_heldout


@dataclass
class StepEvent:
    """After each optimiser step. ``loss``/``mse``/``kl`` are of the global batch; particles/s over this step."""

    epoch: int
    step: int
    global_step: int
    steps_per_epoch: int
    loss: float
    mse: float
    kl: float
    particles_per_s: float


@dataclass
class EpochEvent:
    """After each epoch: means over the epoch; ``checkpoint`` is the file written (None if none this epoch)."""

    epoch: int
    loss: float
    mse: float
    kl: float
    particles_per_s: float
    seconds: float
    checkpoint: Path | None = None
    n_epochs: int | None = None  # epochs of the whole run (``config.epochs``)
    val_loss: float | None = None  # held-out tilts' weighted error (config.val_tilts > 0), comparable with mse


@dataclass
class RunResult:
    outdir: Path
    epochs_completed: int
    final_loss: float | None
    checkpoint: Path | None
    stopped: bool = False
    history: list[EpochEvent] = field(default_factory=list)


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ---------------------------------------------------------------------------------------------------- the loop
def iter_train(
    star_or_series: str | Path | ParticleSeries,
    outdir: str | Path,
    config: TrainConfig | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Iterator[StepEvent | EpochEvent]:
    """Train, yielding a :class:`StepEvent` per step and an :class:`EpochEvent` per epoch.

    Writes into ``outdir`` (rank 0 only): ``config.json``, ``train.log``, ``weights.{e}.pt`` every
    ``checkpoint_every`` epochs and at the end, ``z.{e}.npy`` / ``z.{e}.logvar.npy`` (VAE; μ and log σ² per particle
    in STAR particle order: from an encoder pass over all tilts of each particle when ``z_all_tilts``, else from the
    epoch's training pass), and ``weights.pt`` / ``z.npy`` links to the latest.
    ``resume``: continue from the newest complete checkpoint in ``outdir`` (same optimiser state, epoch, step;
    its saved config is used; a ``config`` given with ``resume`` only changes epochs, num_workers, device,
    checkpoint_every and amp). ``stop_event``: when set, stop after the current step and write a checkpoint.
    Works unchanged under ``torchrun`` (one DistributedSampler replica per process).

    A non-empty ``outdir`` is refused unless ``resume`` or ``overwrite`` (which first deletes the old run's files:
    :func:`tomodrgn.training.run_dir.prepare_run_dir`). The options and the STAR file are checked before anything is
    written; a run that fails before its first checkpoint removes the files it wrote (and the folder it made).
    A NaN or infinite loss stops training with :class:`TrainingDiverged` before the bad step is taken, so the
    last checkpoint written stays the last good one.
    """
    outdir = Path(outdir)
    check_run_dir(outdir, resume, overwrite)
    ctx = init_distributed(config.device if config is not None else "auto")
    try:
        yield from _train(star_or_series, outdir, config, stop_event, resume, ctx, overwrite)
        # all processes finish together before the group is torn down: a gloo process whose peer destroyed the group
        # while it was still running could abort ("terminate called without an active exception", ~1 run in 5 under
        # load; not after an error, where a barrier could wait forever)
        barrier(ctx)
    finally:
        shutdown(ctx)


def _train(star_or_series, outdir: Path, config, stop_event, resume: bool, ctx: DistContext, overwrite: bool = False):
    state = None
    if resume:
        found = ck.latest_checkpoint(outdir) if outdir.is_dir() else None
        if found is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint (weights.*.pt) in {outdir}")
        _, state = found
        saved = TrainConfig.from_dict(state["config"])
        if config is not None:  # a resumed run keeps its model and data settings; these may change
            keep = {k: getattr(config, k) for k in ("epochs", "num_workers", "device", "checkpoint_every", "amp")}
            saved = TrainConfig.from_dict({**saved.to_dict(), **keep})
        config = saved
    if config is None:
        config = TrainConfig()

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    random.seed(config.seed)
    device = ctx.device
    norm = tuple(state["dataset"]["norm"]) if state is not None else None
    if not isinstance(star_or_series, ParticleSeries):
        star_or_series = read_particles_checked(
            star_or_series, pixel_size=config.pixel_size, tomograms_star=config.tomograms_star
        )
    ds = make_dataset(select_particles(star_or_series, first=config.first, ind=config.ind), config, norm=norm)
    D = ds.box_size
    voltage = float(np.median(ds.series.voltage))
    lattice = half_lattice(D, ds.pixel_size, voltage).to(device)
    model = build_model(config, D, ds.n_tilts)
    envelope_note = set_decoder_envelope(model, ds, config, voltage) if state is None else None
    model = model.to(device)
    # the fused AdamW kernel: one pass over all parameters instead of a loop of small ops (~8× faster step on CPU)
    fused = device.type in ("cpu", "cuda")
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    start_epoch, skip_steps, global_step = 0, 0, 0
    partial = None
    if state is not None:
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optimizer"])
        start_epoch, skip_steps, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        _set_rng_state(state["rng"])
        partial = state.get("partial_z")
    ddp = model
    if ctx.distributed:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    backend = config.backend

    if config.batch_size % ctx.world_size:
        raise InputError(f"--batch-size {config.batch_size} is not divisible by the {ctx.world_size} processes")
    local_bs = config.batch_size // ctx.world_size
    sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed)
    steps_per_epoch = (len(sampler) + local_bs - 1) // local_bs
    averaged = weight_average(model, averaging_horizon(config.weight_average_steps, config.epochs * steps_per_epoch))
    if averaged is not None and state is not None and "model_ema" in state:
        averaged.module.load_state_dict(state["model_ema"])
        averaged.n_averaged.fill_(int(state["ema_updates"]))
    evaluated = averaged.module if averaged is not None else model  # what is saved for evaluation
    beta = config.beta if config.beta is not None else default_beta(config.latent_dim, ds.n_tilts, D)
    warmup = int(round(config.beta_warmup_epochs * steps_per_epoch))
    meta = dataset_metadata(ds, voltage)
    z_all_tilts = config.latent_dim > 0 and config.resolved_z_all_tilts
    ds_all = ds.with_tilts(None, sequential=True) if z_all_tilts else None
    val = heldout_set(ds, config.val_tilts, config.seed, config.resolved_z_all_tilts) if config.val_tilts else None
    fm = model.decoder.feature_matrix
    created = prepare_outdir(outdir, config, resume, overwrite, ctx)  # everything above is checked: now write
    run = RunFolder(outdir)
    log = run.log.open("a") if ctx.is_main else None
    found = ck.list_checkpoints(outdir) if ctx.is_main else []
    last_good = [found[-1][1].name if found else None]

    def save(epoch: int, step_in_epoch: int, z=None, partial=None) -> Path | None:
        if not all_finite(model):  # a non-finite gradient at the last step made the weights NaN: keep the old file
            msg = divergence_message("non-finite weights", epoch, step, steps_per_epoch, config, last_good[0])
            if log is not None:
                log.write(msg + "\n")
                log.flush()
            raise TrainingDiverged(msg)
        if not ctx.is_main:
            return None
        e_done = epoch + 1 if step_in_epoch == 0 else epoch
        state = {
            "model": model.state_dict(),
            "optimizer": optim.state_dict(),
            "epoch": e_done,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "rng": _rng_state(),
            "config": config.to_dict(),
            "dataset": meta,
            "feature_matrix": fm.detach().cpu(),
            "partial_z": partial,
        }
        if averaged is not None:
            state["model_ema"], state["ema_updates"] = averaged.module.state_dict(), int(averaged.n_averaged)
        path = ck.atomic_torch_save(state, run.checkpoint(epoch, step_in_epoch))
        ck.link_latest(path, run.weights_link)
        if z is not None:
            zp = ck.atomic_np_save(z[0], run.z(epoch))
            lp = ck.atomic_np_save(z[1], run.logvar(epoch))
            ck.link_latest(zp, run.z_link)
            ck.link_latest(lp, run.logvar_link)
        last_good[0] = path.name
        created.clear()  # the run has a checkpoint: a later failure keeps its folder
        return path

    if log is not None:
        log.write(
            f"# start epoch {start_epoch} step {skip_steps}: {len(ds)} particles, D={D}, "
            f"{ctx.world_size} process(es), device {device}, beta {beta:.3g}\n"
        )
        if envelope_note is not None:
            log.write(f"# {envelope_note}\n")
        log.flush()
    try:
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)  # tilt draws depend on (seed, epoch, particle) only: exact resume
            indices = list(sampler)[skip_steps * local_bs :]
            loader = DataLoader(
                ds,
                batch_size=local_bs,
                sampler=indices,
                collate_fn=collate,
                num_workers=config.num_workers,
                pin_memory=device.type == "cuda",
                persistent_workers=False,
            )
            z_mu = np.zeros((len(ds), config.latent_dim), np.float32) if config.latent_dim else None
            z_lv = np.zeros_like(z_mu) if z_mu is not None else None
            seen_idx, seen_mu, seen_lv = [], [], []
            sums = np.zeros(4)  # loss, mse, kl, particles (global)
            t_epoch = time.perf_counter()
            step = skip_steps
            stopped = stop_flag = False
            if partial is not None:  # latents of the steps done before a mid-epoch stop
                seen_idx, seen_mu, seen_lv = (list(v) for v in partial)
                partial = None
            t_prev = time.perf_counter()
            batches = iter(loader)
            while True:
                with record_function("tomodrgn.data"):
                    batch = next(batches, None)
                if batch is None:
                    break
                index = batch["index"].numpy()
                eps = (
                    particle_noise(config.seed, epoch, index, config.latent_dim).to(device)
                    if z_mu is not None
                    else None
                )
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                terms, mu, logvar = batch_forward(ddp, fm, lattice, batch, config, eps, backend)
                n_local = terms.wsum.new_tensor(float(terms.n_particles))
                red = all_reduce_sum(torch.stack([terms.wsum.detach(), n_local]), ctx)
                b_eff = beta_at(beta, global_step, warmup)
                loss, mse, kl = combine(terms, red[0], red[1], b_eff, ctx.world_size)
                stats = all_reduce_sum(torch.stack([mse, kl]).detach().float(), ctx).cpu().numpy()
                tot = float(stats[0] + b_eff * stats[1])
                if not math.isfinite(tot):  # stop before the bad step changes the weights
                    msg = divergence_message(f"loss {tot}", epoch, step + 1, steps_per_epoch, config, last_good[0])
                    if log is not None:
                        log.write(msg + "\n")
                        log.flush()
                    raise TrainingDiverged(msg)
                optim.zero_grad(set_to_none=True)
                with record_function("tomodrgn.backward"):
                    loss.backward()
                with record_function("tomodrgn.optimizer"):
                    optim.step()
                    if averaged is not None:
                        averaged.update_parameters(model)
                global_step += 1
                step += 1
                n_glob = float(red[1])
                if mu is not None:
                    seen_idx.append(index)
                    seen_mu.append(mu.detach().float().cpu().numpy())
                    seen_lv.append(logvar.detach().float().cpu().numpy())
                now = time.perf_counter()
                dt, t_prev = now - t_prev, now
                sums += [tot * n_glob, stats[0] * n_glob, stats[1] * n_glob, n_glob]
                yield StepEvent(
                    epoch, step, global_step, steps_per_epoch, tot, float(stats[0]), float(stats[1]), n_glob / dt
                )
                stop_flag = stop_event is not None and stop_event.is_set()  # set while this step ran or at its event
                if ctx.distributed:  # every process must agree
                    stop_flag = bool(all_reduce_sum(torch.tensor([float(stop_flag)], device=device), ctx)[0] > 0)
                if stop_flag and step < steps_per_epoch:
                    stopped = True
                    break
            skip_steps = 0
            if stopped:
                gathered = all_gather_objects((seen_idx, seen_mu, seen_lv), ctx)
                flat = tuple([x for g in gathered for x in g[j]] for j in range(3))
                path = save(epoch, step, partial=flat)
                if log is not None:
                    log.write(f"stopped at epoch {epoch} step {step}/{steps_per_epoch}: {path.name}\n")
                    log.flush()
                return
            secs = time.perf_counter() - t_epoch
            last = epoch == config.epochs - 1
            write = last or (epoch + 1) % config.checkpoint_every == 0
            z = None
            if z_mu is not None and write and z_all_tilts:
                # latents from every tilt of each particle: an encoder pass over this process's share
                shard = list(DistributedSampler(ds_all, ctx.world_size, ctx.rank, shuffle=False))
                i, m, lv = encode_particles(evaluated, ds_all, shard, lattice, config, device, 4 * local_bs)
                seen_idx, seen_mu, seen_lv = [i], [m], [lv]
            if z_mu is not None:
                gathered = all_gather_objects((seen_idx, seen_mu, seen_lv), ctx)
                for idxs, mus, lvs in gathered:
                    for i, m, lv in zip(idxs, mus, lvs):
                        z_mu[i], z_lv[i] = m, lv
                z = (z_mu, z_lv)
            path = save(epoch, 0, z) if write else None
            n = max(sums[3], 1.0)
            pps = float(sums[3] / max(secs, 1e-9))
            ev = EpochEvent(epoch, *(float(v) for v in sums[:3] / n), pps, secs, path, config.epochs)
            if val is not None:  # held-out tilts: every process takes its share, the sums are all-reduced
                mu_all = z[0] if z is not None and write and z_all_tilts else None  # from the same tilts
                ev.val_loss, table = evaluate_heldout(
                    evaluated, val, lattice, config, device, ctx, write, mu_all=mu_all
                )
                if ctx.is_main and table is not None:
                    write_heldout(table, outdir, epoch)
            if log is not None:
                log.write(
                    f"epoch {epoch} loss {ev.loss:.6f} mse {ev.mse:.6f} kl {ev.kl:.4f} beta {beta:.3g} "
                    f"particles/s {ev.particles_per_s:.1f} time {secs:.1f}s"
                    + (f" val_loss {ev.val_loss:.6f}" if ev.val_loss is not None else "")
                    + (f" -> {path.name}" if path else "")
                    + "\n"
                )
                log.flush()
            yield ev
            if stop_flag and not last:
                if path is None:
                    save(epoch, 0, z)
                return
    except Exception:
        if log is not None:
            log.close()
            log = None
        remove_created(created)  # failed before its first checkpoint: leave no half-made run behind
        raise
    finally:
        if log is not None:
            log.close()


def epoch_line(ev: EpochEvent) -> str:
    """``epoch N/M loss … mse … kl … s/epoch … particles/s [val_loss …]`` (N counted from 1; the checkpoint written,
    if any)."""
    total = f"/{ev.n_epochs}" if ev.n_epochs else ""
    return (
        f"epoch {ev.epoch + 1}{total} loss {ev.loss:.5f} mse {ev.mse:.5f} kl {ev.kl:.3f} "
        f"{ev.seconds:.1f} s/epoch {ev.particles_per_s:.1f} particles/s"
        + (f" val_loss {ev.val_loss:.5f}" if ev.val_loss is not None else "")
        + (f" -> {ev.checkpoint.name}" if ev.checkpoint else "")
    )


def train(
    star_or_series: str | Path | ParticleSeries,
    outdir: str | Path,
    config: TrainConfig | None = None,
    stop_event: threading.Event | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> RunResult:
    """Run :func:`iter_train` to the end; returns a :class:`RunResult`.

    ``progress``: print one :func:`epoch_line` per epoch on stdout, with a tqdm bar per epoch (on stderr) only when
    stderr is a terminal, so output redirected to a file or pipe has no carriage-return progress noise.
    ``resume`` / ``overwrite``: see :func:`iter_train`.
    """
    from tqdm.auto import tqdm

    outdir = Path(outdir)
    history: list[EpochEvent] = []
    bar = None
    last_loss = None
    show_bar = progress and sys.stderr.isatty()
    for ev in iter_train(star_or_series, outdir, config, stop_event, resume, overwrite):
        if isinstance(ev, StepEvent):
            if bar is None and show_bar:
                bar = tqdm(total=ev.steps_per_epoch, desc=f"epoch {ev.epoch + 1}", unit="batch", leave=False)
                bar.n = ev.step - 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ev.loss:.4f}", pps=f"{ev.particles_per_s:.0f}")
            last_loss = ev.loss
        else:
            history.append(ev)
            if bar is not None:
                bar.close()
                bar = None
            if progress:
                tqdm.write(epoch_line(ev), file=sys.stdout)
                sys.stdout.flush()
    if bar is not None:
        bar.close()
    found = ck.list_checkpoints(outdir) if outdir.is_dir() else []
    latest = found[-1] if found else None
    epochs_done = latest[0][0] if latest else 0
    saved = RunFolder(outdir).config
    final_cfg = config or (TrainConfig.load(saved) if saved.exists() else None)
    stopped = final_cfg is not None and epochs_done < final_cfg.epochs
    return RunResult(
        outdir=outdir,
        epochs_completed=epochs_done,
        final_loss=history[-1].loss if history else last_loss,
        checkpoint=latest[1] if latest else None,
        stopped=stopped,
        history=history,
    )
