"""Trustworthy runs: every user error through the ``tomodrgn`` command is one line on stderr naming the culprit,
exit status 2, no traceback; used run folders are refused or cleanly overwritten; a diverging run stops with its
last good checkpoint intact; a failed checkpoint write leaves no ``.tmp`` and says why.

A few cases run the real command in a subprocess (exit status, stderr, no traceback, torch not imported for
``--help``, a file-size limit, full / read-only disks); the others call ``tomodrgn.cli.main`` in this process
(:func:`_cli_inprocess.run_cli`), which keeps every check but loads torch once.
"""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.io.star import find_particle_block, read_star, write_star
from tomodrgn.runs import TrainConfig, load_model
from tomodrgn.simulate import simulate_dataset
from tomodrgn.training import train

TINY = ["--batch-size", "4", "--n-tilts", "5", "--dec-arch", "16x2", "--enc-arch-a", "16x1", "--zdim", "2"]
TINY += ["--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*argv, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tomodrgn.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        env=ENV,
        preexec_fn=preexec_fn,
    )


@pytest.fixture
def cli_in(capsys):
    """``cli`` in this process (see the module docstring)."""
    return lambda *argv: run_cli(capsys, *argv)


def tiny_config(**kw) -> TrainConfig:
    base = dict(batch_size=4, n_tilts=5, dec_arch="16x2", enc_arch_a="16x1", zdim=2, device="cpu", epochs=2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("err") / "sim", n_particles=12, box_size=16, n_tilts=9, seed=1)


@pytest.fixture(scope="module")
def run(sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("err") / "run"
    train(sim.star_path, out, tiny_config(), progress=False)
    return out


def test_help_and_argument_errors_do_not_import_torch():
    code = (
        "import sys, tomodrgn.cli; tomodrgn.cli.build_parser(); print('torch' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.parametrize(
    "option, value",
    [
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--lr", "inf"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
        ("--beta", "inf"),
        ("--beta", "-0.5"),
        ("--weight-decay", "-1"),
        ("--zdim", "0"),
        ("--n-tilts", "0"),
        ("--feat-sigma", "0"),
        ("--box-size", "15"),
        ("--box-size", "4"),
        ("--num-workers", "-1"),
        ("--checkpoint-every", "0"),
        ("--enc-mask", "0"),
        ("--first", "0"),
        ("--dec-arch", "3"),
        ("--device", "gpu"),
        ("--decoder-envelope", "bogus"),
        ("--weight-average-steps", "-1"),
    ],
)
def test_bad_training_option_is_one_line_and_writes_nothing(sim, tmp_path, cli_in, option, value):
    out = tmp_path / "run"
    res = cli_in("train_vae", sim.star_path, "-o", out, *TINY, option, value)
    assert_user_error(res, option)
    assert not out.exists()  # checked before anything was written


def test_bad_training_option_real_command(sim, tmp_path):
    """The real command: exit status 2 and one stderr line from a separate process."""
    out = tmp_path / "run"
    assert_user_error(cli("train_vae", sim.star_path, "-o", out, *TINY, "--lr", "nan"), "--lr")
    assert_user_error(cli("train_nn", sim.star_path, "-o", tmp_path / "r", "--lr", "nan"), "--lr")
    assert not out.exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["train_vae", "x.star", "-o", "r", "--lr", "abc"], "--lr"),
        (["train_vae", "x.star", "-o", "r", "--weight-average-steps", "1.5"], "--weight-average-steps"),
        (["train_vae", "x.star"], "-o/--outdir"),
        (["backproject", "x.star", "-o", "r", "--no-such-option"], "--no-such-option"),
        (["no_such_command"], "no_such_command"),
    ],
)
def test_argument_errors_are_one_line_without_the_usage_block(tmp_path, argv, culprit):
    """Errors argparse finds itself (a value of the wrong type, a missing or unknown argument, a wrong command)."""
    res = subprocess.run(
        [sys.executable, "-m", "tomodrgn.cli", *argv], capture_output=True, text=True, env=ENV, cwd=tmp_path
    )
    line = assert_user_error(res, culprit)
    assert "usage:" not in res.stderr and "--help" in line


def test_train_nn_bad_number(sim, tmp_path, cli_in):
    assert_user_error(cli_in("train_nn", sim.star_path, "-o", tmp_path / "r", "--lr", "nan"), "--lr")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["train_vae", "{tmp}/nosuch.star", "-o", "{tmp}/r"], "nosuch.star"),
        (["eval_vol", "{tmp}/nosuch", "-o", "{tmp}/v", "--z", "0", "0"], "nosuch"),
        (["eval_images", "{run}", "{star}", "--n-tilts", "0", "-o", "{tmp}/z.npy"], "--n-tilts"),
        (["eval_vol", "{run}", "-o", "{tmp}/v", "--z", "0", "0", "0"], "--z"),
        (["analyze", "{run}", "--ksample", "0", "-o", "{tmp}/an"], "k = 0"),
        (["filter_star", "{star}", "-o", "{tmp}/f.star", "--ind", "{tmp}/ind.txt"], "index 99"),
        (["simulate", "{tmp}/s", "-D", "15"], "15"),
    ],
)
def test_commands_wrong_path_or_number(sim, run, tmp_path, cli_in, argv, culprit):
    (tmp_path / "ind.txt").write_text("0\n99\n")
    fill = {"tmp": tmp_path, "run": run, "star": sim.star_path}
    assert_user_error(cli_in(*(a.format(**fill) for a in argv)), culprit)


def test_command_wrong_path_real_command(tmp_path):
    assert_user_error(cli("eval_vol", tmp_path / "nosuch", "-o", tmp_path / "v", "--z", "0", "0"), "nosuch")


def test_used_run_folder_is_refused_and_overwrite_leaves_only_the_new_run(sim, tmp_path, cli_in):
    out = tmp_path / "run"
    train(sim.star_path, out, tiny_config(epochs=3, seed=0), progress=False)
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir())

    msg = assert_user_error(cli_in("train_vae", sim.star_path, "-o", out, *TINY, "--epochs", "1"), str(out))
    assert "--resume" in msg and "--overwrite" in msg
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched

    res = cli_in("train_vae", sim.star_path, "-o", out, *TINY, "--epochs", "1", "--seed", "7", "--overwrite")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["config.json", "train.log", "weights.0.pt", "weights.pt", "z.0.npy", "z.0.logvar.npy", "z.npy"]
        + ["z.logvar.npy", "notes.txt"]
    )
    assert json.loads((out / "config.json").read_text())["seed"] == 7
    assert load_model(out).config.seed == 7 and load_model(out).epoch == 0
    assert "weights.0.pt" in res.stdout.splitlines()[-1]  # reports its own checkpoint

    assert_user_error(cli_in("train_vae", sim.star_path, "-o", out, "--resume", "--overwrite"), "--resume")


def test_epoch_lines_on_stdout_without_progress_noise(run, sim, tmp_path):
    res = cli("train_nn", sim.star_path, "-o", tmp_path / "nn", "--epochs", "2", "--batch-size", "4")
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stdout and "\r" not in res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1:3] for ln in lines] == [["0", "(1/2)"], ["1", "(2/2)"]]  # counted from 0, as the files
    assert [ln.split("-> ")[1] for ln in lines] == ["weights.0.pt", "weights.1.pt"]
    assert all("loss" in ln and "mse" in ln and "s/epoch" in ln and "particles/s" in ln for ln in lines)
    assert not any(" kl " in ln for ln in lines)  # a homogeneous run has no KL term
    log = (tmp_path / "nn" / "train.log").read_text()
    assert "# epochs are counted from 0" in log and "\nepoch 0 loss" in log and "\nepoch 1 loss" in log


def test_diverging_run_stops_and_keeps_its_last_good_checkpoint(sim, tmp_path, cli_in):
    """lr 0.7 on this dataset, in fp32 (--no-amp: the same arithmetic on every CPU): epoch 1 is finite, the loss is
    not finite in epoch 2 (measured: inf at step 2 of 3; lr 0.6 trains 6 epochs, lr ≥ 0.8 diverges in epoch 1 before
    any checkpoint)."""
    out = tmp_path / "nan"
    res = cli_in("train_vae", sim.star_path, "-o", out, *TINY, "--epochs", "6", "--lr", "0.7", "--no-amp")
    msg = assert_user_error(res, "training stopped", "--lr 0.7", "pixel size")
    kept = msg.split("the last good checkpoint is ")[1].split(".")[:3]
    kept = out / ".".join(kept)
    assert kept.exists() and not list(out.glob("*.tmp"))
    model = load_model(out)
    assert model.path == kept
    assert all(bool(np.isfinite(p.detach().numpy()).all()) for p in model.model.parameters())
    assert "training stopped" in (out / "train.log").read_text()


def _block(star: Path):
    blocks = read_star(star)
    return blocks, find_particle_block(blocks, star)


def test_star_without_rows_and_duplicate_image_rows(sim, tmp_path, cli_in):
    blocks, name = _block(sim.star_path)
    empty = dict(blocks)
    empty[name] = blocks[name].iloc[:0]
    write_star(empty, sim.star_path.parent / "empty.star")
    dup = dict(blocks)
    df = blocks[name].copy()
    df.loc[4, "rlnImageName"] = df.loc[3, "rlnImageName"]
    dup[name] = df
    write_star(dup, sim.star_path.parent / "dup.star")

    res = cli_in("train_vae", sim.star_path.parent / "empty.star", "-o", tmp_path / "e", *TINY)
    assert_user_error(res, "empty.star: the particle block has no rows")
    res = cli_in("train_vae", sim.star_path.parent / "dup.star", "-o", tmp_path / "d", *TINY)
    assert_user_error(res, "dup.star", "rows 3 and 4", df.loc[3, "rlnImageName"])
    assert not (tmp_path / "e").exists() and not (tmp_path / "d").exists()


def test_file_size_limit_on_checkpoint_write(sim, tmp_path):
    out = tmp_path / "fs"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # config.json fits, a checkpoint does not

    res = cli("train_vae", sim.star_path, "-o", out, *TINY, "--epochs", "1", preexec_fn=limit)
    assert_user_error(res, "file too large", "weights.0.pt")
    assert not out.exists()  # failed before its first checkpoint: nothing left behind


def _mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]).returncode == 0


def test_full_disk_keeps_last_checkpoint_and_names_the_file(sim, tmp_path):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "size=1m"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        st = os.statvfs(mnt)
        (mnt / "filler").write_bytes(b"0" * (st.f_bavail * st.f_frsize - 150_000))  # room for one ~92 kB checkpoint
        out = mnt / "run"
        res = cli("train_vae", sim.star_path, "-o", out, *TINY, "--epochs", "3")
        assert_user_error(res, "no space left on the device writing", "weights.1.pt")
        assert not list(out.glob("*.tmp"))
        assert load_model(out).path.name == "weights.0.pt"
    finally:
        subprocess.run(["umount", str(mnt)])


def test_read_only_output_folder(sim, tmp_path):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "size=64k,ro"):
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        assert_user_error(cli("train_vae", sim.star_path, "-o", mnt / "run", *TINY), "read-only file system", str(mnt))
    finally:
        subprocess.run(["umount", str(mnt)])


def test_first_and_ind_select_particles(sim, run, tmp_path, cli_in):
    from tomodrgn.io.selection import read_particles_checked, select_particles

    series = read_particles_checked(sim.star_path)
    sub = select_particles(series, ind=np.array([5, 2]))
    assert sub.particle_names == [series.particle_names[5], series.particle_names[2]]
    for k, p in enumerate((5, 2)):
        rows_old, rows_new = series.image_indices[p], sub.image_indices[k]
        assert np.array_equal(sub.stack_index[rows_new], series.stack_index[rows_old])
        assert np.allclose(sub.rotation[rows_new], series.rotation[rows_old])
        assert np.allclose(sub.dose[rows_new], series.dose[rows_old])
    assert sub.n_images == len(series.image_indices[5]) + len(series.image_indices[2])
    assert select_particles(series, first=4).particle_names == series.particle_names[:4]

    res = cli_in("train_vae", sim.star_path, "-o", tmp_path / "f", *TINY, "--epochs", "1", "--first", "5")
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "f" / "z.npy").shape == (5, 2)
    (tmp_path / "ind.txt").write_text("# kept\n7\n1\n3\n")
    res = cli_in("eval_images", run, sim.star_path, "--ind", tmp_path / "ind.txt", "-o", tmp_path / "z.npy")
    assert res.returncode == 0, res.stderr
    from tomodrgn.api import embed_particles

    mu_all, _ = embed_particles(run, sim.star_path)
    assert np.allclose(np.load(tmp_path / "z.npy"), mu_all[[7, 1, 3]], atol=1e-4)  # the same particles, in list order
