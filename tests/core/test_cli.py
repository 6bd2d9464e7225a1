"""The command line is thin and documented: every command parses, and docs/cli.md matches the parser."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tomodrgn.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "cli.md").read_text() == mod.render(), "run: python docs/gen_cli_reference.py"


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "out", "--preset", "continuous", "-D", "16"],
        ["train_vae", "p.star", "-o", "run", "--zdim", "4", "--no-dose-filter", "--pooling", "max"],
        ["train_nn", "p.star", "-o", "run", "--epochs", "3"],
        ["eval_vol", "run", "-o", "vols", "--z", "0", "1"],
        ["filter_star", "p.star", "-o", "f.star", "--labels", "l.npy", "--keep", "0", "2"],
    ],
)
def test_commands_parse(argv):
    args = build_parser().parse_args(argv)
    assert callable(args.func)


def test_train_options_map_onto_config():
    from tomodrgn.cli.train import train_config

    args = build_parser().parse_args(["train_vae", "p.star", "-o", "r", "--zdim", "3", "--batch-size", "5"])
    cfg = train_config(args, "vae")
    assert (cfg.mode, cfg.zdim, cfg.batch_size) == ("vae", 3, 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train_nn", "p.star", "-o", "r", "--zdim", "3"])  # no latent in homogeneous


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "tomodrgn.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tomodrgn ")
