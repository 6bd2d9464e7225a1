"""Options are taken only as spelled, and an unknown one is named by the command's own parser (issue 35): argparse's
prefix matching had taken ``train_vae --epoch 2`` silently as ``--epochs 2``."""

from __future__ import annotations

import argparse

from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.cli import build_parser


def all_parsers() -> dict[str, argparse.ArgumentParser]:
    """The top parser and every sub-command's, by name (walked, not listed by hand)."""
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"tomodrgn": top, **sub.choices}


def test_no_parser_takes_abbreviations():
    parsers = all_parsers()
    assert len(parsers) > 20
    assert [name for name, p in parsers.items() if p.allow_abbrev] == []


def test_a_prefix_of_an_option_is_an_unknown_option_of_that_command(capsys, tmp_path):
    res = run_cli(capsys, "train_vae", tmp_path / "p.star", "-o", tmp_path / "run", "--epoch", "2")
    line = assert_user_error(res, "unrecognized arguments: --epoch 2", "see tomodrgn train_vae --help")
    assert line.startswith("tomodrgn train_vae: error:")
    assert not (tmp_path / "run").exists()
    res = run_cli(capsys, "analyze", tmp_path / "run", "--ksamp", "3")
    assert_user_error(res, "--ksamp 3", "see tomodrgn analyze --help")
