"""Devices, resumed settings and an output file in place of a folder, as a user meets them on the command line:
an unusable ``--device`` is one line naming it and what is available (exit 2, before any folder is made) in every
command that has the option; ``--resume`` refuses settings the run does not have, naming each; resuming a finished
run says there is nothing to do; ``downsample -o FILE`` is one line."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.cli import build_parser
from tomodrgn.io.errors import InputError
from tomodrgn.runs import TrainConfig
from tomodrgn.runtime.device import available_devices, resolve_device
from tomodrgn.simulate import simulate_dataset

TINY = ["--batch-size", "4", "--n-tilts", "3", "--dec-arch", "16x2", "--enc-arch-a", "16x1", "--zdim", "2"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("dev") / "sim", n_particles=8, box_size=16, n_tilts=5, seed=2)


@pytest.fixture
def cli_in(capsys):
    return lambda *argv: run_cli(capsys, *argv)


def commands_with_device() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command whose parser has ``--device``, by name (the parser walked, not a list kept by hand)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: p for name, p in sub.choices.items() if any("--device" in a.option_strings for a in p._actions)}


def minimal_argv(name: str, parser: argparse.ArgumentParser, folder) -> list[str]:
    """``name`` with a placeholder for each required positional and option (paths under ``folder``)."""
    argv = [name]
    for a in parser._actions:
        if a.option_strings and not a.required:
            continue
        if a.nargs in ("?", "*") or isinstance(a, argparse._HelpAction):
            continue
        count = a.nargs if isinstance(a.nargs, int) else 1
        value = ["1" if a.type in (int, float) else str(folder / f"{a.dest}_{i}") for i in range(count)]
        argv += [*([a.option_strings[0]] if a.option_strings else []), *value]
    return argv


UNUSABLE = [
    s for s in ("cuda", "cuda:3", "mps") if s.split(":")[0] not in {d.split(":")[0] for d in available_devices()}
]


def test_resolve_device_names_the_device_and_what_is_available():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match=r"--device 'gpu' is not a device: use auto, cpu, cuda\[:i\] or mps"):
        resolve_device("gpu")
    for spec in UNUSABLE:
        with pytest.raises(InputError, match=f"--device {spec}: .* not available on this machine; available: cpu"):
            resolve_device(spec)
    with pytest.raises(InputError, match="--device 'cuda:x' is not a device"):
        TrainConfig(device="cuda:x")  # the spelling is checked without torch, with the other options


@pytest.mark.parametrize("spec", [*UNUSABLE, "gpu"])
def test_every_command_with_device_refuses_an_unusable_one_before_making_folders(spec, tmp_path, cli_in):
    commands = commands_with_device()
    assert {"train_vae", "train_nn", "backproject", "eval_vol", "pc_traversal", "analyze_volumes"} <= set(commands)
    for name, parser in commands.items():
        folder = tmp_path / name
        folder.mkdir()
        res = cli_in(*minimal_argv(name, parser, folder), "--device", spec)
        line = assert_user_error(res, f"--device {spec}" if spec != "gpu" else "--device 'gpu'")
        assert "available: cpu" in line or "use auto, cpu" in line, (name, line)
        assert list(folder.iterdir()) == [], (name, list(folder.iterdir()))  # nothing written


def test_downsample_into_a_file_is_one_line(sim, tmp_path, cli_in):
    target = tmp_path / "taken.mrcs"
    target.write_bytes(b"not a folder")
    res = cli_in("downsample", sim.star_path, "-D", "8", "-o", target)
    assert_user_error(res, f"-o {target}", "is a file, not a folder")
    assert target.read_bytes() == b"not a folder"


def test_resume_refuses_other_settings_and_a_finished_run_says_so(sim, tmp_path, cli_in):
    run = tmp_path / "run"
    train = ["train_vae", sim.star_path, "-o", run, *TINY, "--device", "cpu", "--no-amp"]
    assert cli_in(*train, "--epochs", "1").returncode == 0
    config_before = (run / "config.json").read_text()

    res = cli_in(*train, "--epochs", "2", "--resume", "--zdim", "4", "--lr", "0.1", "--n-tilts", "5")
    line = assert_user_error(res, "--resume", "--zdim 4 (the run has 2)", "--lr 0.1 (the run has 0.001)")
    assert "--n-tilts 5 (the run has 3)" in line and "--epochs" in line.split("these differ")[1]  # what may change
    assert (run / "config.json").read_text() == config_before and not (run / "weights.1.pt").exists()

    res = cli_in("train_nn", sim.star_path, "-o", run, "--resume")
    assert_user_error(res, "train_nn on a vae run")

    res = cli_in(*train, "--epochs", "2", "--resume")  # the same settings and more epochs: continues
    assert res.returncode == 0 and (run / "weights.1.pt").exists(), res.stderr
    assert TrainConfig.load(run / "config.json").epochs == 2

    res = cli_in("train_vae", sim.star_path, "-o", run, "--resume")  # finished: defaults keep the run's settings
    assert res.returncode == 0, res.stderr
    assert f"nothing to do: {run} has finished its 2 epochs" in res.stdout and "None" not in res.stdout


def test_training_reads_stacks_from_datadir_and_the_run_remembers_it(sim, tmp_path, cli_in):
    """A STAR moved away from its stacks (relative image paths): training needs --datadir, one line without it; the
    run records it, so everything that reads the run's particles again finds the stacks too."""
    from tomodrgn import api

    moved = tmp_path / "elsewhere" / "particles.star"
    moved.parent.mkdir()
    moved.write_text(sim.star_path.read_text())
    argv = ["train_vae", moved, *TINY, "--device", "cpu", "--epochs", "1", "--no-amp"]
    assert_user_error(cli_in(*argv, "-o", tmp_path / "no"), "--datadir")
    assert not (tmp_path / "no").exists()
    res = cli_in(*argv, "-o", tmp_path / "run", "--datadir", sim.star_path.parent)
    assert res.returncode == 0, res.stderr
    assert TrainConfig.load(tmp_path / "run" / "config.json").datadir == str(sim.star_path.parent.absolute())
    assert api.training_particles(tmp_path / "run").n_particles == sim.labels.size
    res = cli_in("eval_images", tmp_path / "run", moved, "-o", tmp_path / "z.npy")  # the run's --datadir
    assert res.returncode == 0 and np.load(tmp_path / "z.npy").shape[0] == sim.labels.size, res.stderr
    other = tmp_path / "third" / "particles.star"
    other.parent.mkdir()
    other.write_text(moved.read_text())
    assert_user_error(cli_in("eval_images", tmp_path / "run", other, "-o", tmp_path / "z2.npy"), "--datadir")
    res = cli_in("eval_images", tmp_path / "run", other, "-o", tmp_path / "z2.npy", "--datadir", sim.star_path.parent)
    assert res.returncode == 0 and np.load(tmp_path / "z2.npy").shape[0] == sim.labels.size, res.stderr
