"""One process or many under ``torchrun``: the same code path (``docs/architecture.md``, "Distributed").

``init_distributed`` reads RANK / WORLD_SIZE / LOCAL_RANK; with WORLD_SIZE > 1 it starts a process group (NCCL on
GPU, gloo on CPU). Helpers reduce tensors and gather Python objects; with one process they are no-ops.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tomodrgn.runtime.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """This process's place: rank, world size, its device; ``is_main`` writes checkpoints and logs."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Detect torchrun (env RANK, WORLD_SIZE) and initialise the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``t`` over processes (in place, returned)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj, ctx: DistContext) -> list:
    """List of ``obj`` from every process (rank order)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


#: seconds :func:`shutdown` leaves the GIL free after destroying the process group (see there)
GLOO_DRAIN_S = 0.2


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group. gloo's worker threads outlive it (torch keeps them until the process ends), and one
    may still be freeing a finished collective whose tensors need the GIL: at interpreter exit that aborts the process
    after a complete run ("terminate called without an active exception"; a core dump: ``~AsyncBarrierWork`` →
    ``take_gil`` during ``Py_FinalizeEx``, 2 runs in 23 of test_distributed's under load). So the GIL is left free
    for :data:`GLOO_DRAIN_S` first."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
        time.sleep(GLOO_DRAIN_S)
