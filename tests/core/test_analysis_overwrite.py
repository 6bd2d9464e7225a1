"""Analysis outputs follow the training rule (issue 32, item 8): re-running ``analyze``, ``pc_traversal``,
``graph_traversal``, ``analyze_volumes``, ``convergence_vae`` or ``convergence_nn`` into a used folder (the default
folder in the run too) is one line naming the folder and ``--overwrite``, exit 2, before any work, and nothing is
touched; ``--overwrite`` first removes what the command wrote there (no file of the earlier call is left) and keeps
the user's other files. Real runs, the real command line in this process."""

import os
import shutil

import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.analysis import outputs
from tomodrgn.api import RunFolder, TrainConfig, simulate, train

TINY = dict(enc_arch_a="16x1", enc_arch_b="16x1", embed_dim=8, dec_arch="16x2", device="cpu", backend="torch")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(VAE run, homogeneous run, a map of the simulated particles) trained on 12 particles."""
    out = tmp_path_factory.mktemp("ow")
    sim = simulate(out / "sim", n_particles=12, box_size=16, n_tilts=5, snr=1.0, seed=2)
    train(sim.star_path, out / "vae", TrainConfig(zdim=2, epochs=2, batch_size=4, **TINY), progress=False)
    nn = TrainConfig(mode="homogeneous", epochs=3, batch_size=4, **TINY)
    train(sim.star_path, out / "nn", nn, progress=False)
    return out / "vae", out / "nn", sim.volume_paths[0]


@pytest.fixture
def cli(capsys):
    return lambda *argv: run_cli(capsys, *argv)


#: command → (first call, second call's changed options, default folder (name, epoch known), an entry only the first
#: call writes, what the command writes)
CASES = {
    "analyze": (["--no-umap", "--ksample", "3"], ["--no-umap", "--ksample", "2"], "analyze", "kmeans3",
                outputs.ANALYZE),
    "pc_traversal": (["--pc", "1", "2", "--n-points", "2"], ["--pc", "1", "--n-points", "2"], "pc_traversal", "pc2",
                     outputs.PC_TRAVERSAL),
    "graph_traversal": (["--anchors", "0", "5"], ["--anchors", "0", "0"], "graph_traversal", "vol_001.mrc",
                        outputs.GRAPH_TRAVERSAL),
    "analyze_volumes": (["--n-volumes", "6", "--ksample", "3", "--n-pcs", "2"],
                        ["--n-volumes", "6", "--ksample", "2", "--n-pcs", "2"], "analyze_volumes", "kmeans3",
                        outputs.ANALYZE_VOLUMES),
    "convergence_vae": (["--k", "3", "--n-volumes", "2"], ["--k", "3", "--no-volumes"], "convergence",
                        "volume_stability.png", outputs.CONVERGENCE_VAE),
    "convergence_nn": (["--reference", "{map}"], [], "convergence_nn", "fsc_reference.png", outputs.CONVERGENCE_NN),
}  # fmt: skip


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("command", list(CASES))
def test_rerun_into_the_default_folder_needs_overwrite(command, runs, tmp_path, cli):
    first, second, name, stale, written = CASES[command]
    source = runs[1] if command == "convergence_nn" else runs[0]
    run = tmp_path / "run"
    shutil.copytree(source, run, symlinks=True)
    first = [a.format(map=runs[2]) for a in first]
    res = cli(command, run, *first)
    assert res.returncode == 0, res.stderr
    epoch = None if name.startswith("convergence") else RunFolder(run).latent_epochs()[-1]
    folder = RunFolder(run).output(name, epoch)
    assert (folder / stale).exists()
    assert all(written.owns(p.name) for p in folder.iterdir()), sorted(p.name for p in folder.iterdir())
    (folder / "mine.txt").write_text("keep me")
    before = _snapshot(folder)

    # without --overwrite: refused before any work (the weights are gone: loading them would fail otherwise)
    weights = tmp_path / "weights"
    weights.mkdir()
    for p in run.glob("weights*.pt"):
        shutil.move(p, weights / p.name)
    res = cli(command, run, *second)
    assert_user_error(res, str(folder), "not empty", "--overwrite", command)
    assert _snapshot(folder) == before
    for p in weights.iterdir():
        shutil.move(p, run / p.name)

    res = cli(command, run, *second, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert not (folder / stale).exists(), sorted(p.name for p in folder.iterdir())
    assert (folder / "mine.txt").read_text() == "keep me"
    assert all(written.owns(p.name) for p in folder.iterdir() if p.name != "mine.txt")
    if command == "graph_traversal":
        assert sorted(p.name for p in folder.glob("vol_*.mrc")) == ["vol_000.mrc"]


def test_overwrite_never_removes_an_input_and_resume_excludes_it(runs, tmp_path, cli):
    run, out = runs[0], tmp_path / "av"
    res = cli("analyze_volumes", run, "-o", out, "--n-volumes", "12", "--ksample", "2", "--n-pcs", "2")
    assert res.returncode == 0, res.stderr
    volumes = sorted((out / "volumes").glob("vol_*.mrc"))
    assert len(volumes) == 12  # one per particle, in particle order: a --voldir
    res = cli("analyze_volumes", run, "-o", out, "--voldir", out / "volumes", "--ksample", "2", "--overwrite")
    assert_user_error(res, "--overwrite would remove", str(out / "volumes"), "choose another output folder")
    assert sorted((out / "volumes").glob("vol_*.mrc")) == volumes
    res = cli("analyze_volumes", run, "-o", out, "--n-volumes", "12", "--resume", "--overwrite")
    assert_user_error(res, "--resume", "--overwrite", "not both")
    # the volumes copied elsewhere are an input that is not removed: the folder is replaced from them
    shutil.copytree(out / "volumes", tmp_path / "given")
    res = cli("analyze_volumes", run, "-o", out, "--voldir", tmp_path / "given", "--ksample", "2", "--overwrite")
    assert res.returncode == 0, res.stderr
    assert not (out / "volumes").exists()  # the earlier call's decoded volumes are gone with it
    assert os.listdir(tmp_path / "given") and (out / "report.md").exists()
    assert np.load(out / "kmeans2" / "labels.npy").shape == (12,)
