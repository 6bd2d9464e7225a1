"""Two gloo processes under torchrun train exactly what one process trains on the same global batches."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tomodrgn.runs.checkpoint import load_checkpoint
from tomodrgn.simulate import simulate_dataset

WORKER = Path(__file__).with_name("_train_worker.py")


@pytest.mark.parametrize("encoder", ["per-tilt", "reference-frame"])
def test_torchrun_two_processes_equal_one(tmp_path, encoder):
    """reference-frame also writes latents from an all-tilt encoder pass shared between the processes."""
    sim = simulate_dataset(tmp_path / "sim", "4-class", n_particles=8, box_size=16, n_tilts=7, max_tilt=18, seed=2)
    common = [str(sim.star_path)]
    opts = ["--epochs", "2", "--batch-size", "4", "--encoder", encoder]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    single = subprocess.run(
        [sys.executable, str(WORKER), *common, str(tmp_path / "one"), *opts],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stderr
    multi = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(WORKER),
            *common,
            str(tmp_path / "two"),
            *opts,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    # each of the 2 processes ran 2 steps per epoch (global batch 4 = 2 × 2) over 8 particles: 2 steps per epoch
    assert multi.stdout.count("step 1 2") == 2 and single.stdout.count("step 1 2") == 1
    a = load_checkpoint(tmp_path / "one" / "weights.1.pt")
    b = load_checkpoint(tmp_path / "two" / "weights.1.pt")
    assert a["global_step"] == b["global_step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6, msg=k)
    moved = sum(
        float((a["model"][k] - load_checkpoint(tmp_path / "one" / "weights.0.pt")["model"][k]).abs().sum())
        for k in a["model"]
    )
    assert moved > 0
    # only rank 0 wrote the run directory; latents cover all particles from both processes
    np.testing.assert_allclose(
        np.load(tmp_path / "one" / "z.1.npy"), np.load(tmp_path / "two" / "z.1.npy"), rtol=1e-4, atol=1e-5
    )
    assert (np.abs(np.load(tmp_path / "two" / "z.1.npy")).sum(axis=1) > 0).all()  # every particle has a latent
    log = (tmp_path / "two" / "train.log").read_text()
    assert "2 process(es)" in log and log.count("epoch 1 loss") == 1
