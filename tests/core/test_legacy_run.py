"""A run folder written by tomodrgn-core 0.1.0 (``tests/data/run_0.1.0``, committed, never regenerated) loads,
resumes and analyses with the current code: users' old runs must keep working through refactors of the run folder.

The folder was made in /tmp/rf, so its checkpoint records a training STAR path that no longer exists (as for a run
folder moved to another machine); the STAR is given again where a command needs the particles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cli_inprocess import run_cli

from tomodrgn import api
from tomodrgn.runs import TrainConfig

LEGACY = Path(__file__).parents[1] / "data" / "run_0.1.0"


@pytest.fixture
def legacy(tmp_path):
    out = tmp_path / "legacy"
    shutil.copytree(LEGACY, out, symlinks=True)
    return out / "run", out / "sim" / "particles.star"


def test_legacy_run_loads(legacy):
    run, _ = legacy
    model = api.load_model(run)
    z = np.load(run / "z.npy")
    assert model.epoch == 0 and model.zdim == 2 and model.box_size == 16 and z.shape == (8, 2)
    assert model.pixel_size == pytest.approx(26.2)
    vols = model.decode(z[:3])
    assert vols.shape == (3, 16, 16, 16) and np.all(np.isfinite(vols)) and vols.std() > 0
    # the same z decodes to the same volume (a loaded model is deterministic)
    np.testing.assert_array_equal(model.decode(z[:1])[0], vols[0])


def test_legacy_run_resumes(legacy):
    run, star = legacy
    before = json.loads((run / "config.json").read_text())
    res = api.train(star, run, TrainConfig(**{**before, "epochs": 2}), resume=True, progress=False)
    assert res.epochs_completed == 2 and (run / "weights.1.pt").is_file() and (run / "z.1.npy").is_file()
    assert np.load(run / "z.1.npy").shape == (8, 2)
    log = (run / "train.log").read_text()
    assert "\nepoch 0 loss" in log and "\nepoch 1 loss" in log  # the old log kept, the new epoch appended
    assert api.load_model(run).epoch == 1


def test_legacy_run_analyses(legacy, capsys):
    run, star = legacy
    res = api.analyze(run, k=2, umap=False, star=star)
    assert res.report.is_file() and len(list((res.outdir / "kmeans2").glob("vol_*.mrc"))) == 2
    assert np.load(res.outdir / "kmeans2" / "labels.npy").shape == (8,)
    assert len(list((res.outdir / "kmeans2").glob("cluster_*.star"))) == 2  # the STAR given again: per-cluster STARs
    r = run_cli(capsys, "eval_vol", run, "--z", "0", "0", "-o", run.parent / "vol")
    assert r.returncode == 0 and (run.parent / "vol" / "vol_000.mrc").is_file(), r.stderr
    r = run_cli(capsys, "pc_traversal", run, "--pc", "1", "--n-points", "2", "-o", run.parent / "pc")
    assert r.returncode == 0 and len(list((run.parent / "pc" / "pc1").glob("vol_*.mrc"))) == 2, r.stderr
