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


# ----------------------------------------------------------------------------------- one vocabulary, help for all
#: the spelling of each concept in every command (dest → option strings); the published tomoDRGN's spellings live in
#: each command's compatible-options group and are checked by test_tomodrgn_compat / test_tomodrgn_command_lines
CANONICAL = {
    "outdir": ["-o", "--outdir"],  # an output folder
    "output": ["-o", "--output"],  # an output file
    "box_size": ["-D", "--box-size"],
    "ind": ["--ind"],  # a particle index list
    "epoch": ["--epoch"],  # a checkpoint of a run
    "device": ["--device"],
    "overwrite": ["--overwrite"],
}
#: spellings of those concepts that are hidden aliases only
OLD_SPELLINGS = {"--indices", "--box", "--out", "--outdir-name", "--output-dir", "--out-dir", "--num-epochs"}
#: words that name a unit or what is counted; every int / float option's help names one
UNIT_WORDS = (
    "Å", "px", "pixel", "°", "degree", "e⁻", "GiB", "kDa", "epoch", "step", "particle", "tilt", "image", "volume",
    "point", "neighbour", "cluster", "node", "layer", "feature", "seed", "process", "frame", "dimension", "percentile",
    "second", "fraction", "per ", "×", "ratio", "weight", "rate", "SNR", "σ", "standard deviation", "component",
    "count", "number", "CC", "score", "correlation", "k-NN", "N ",
)  # fmt: skip


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every sub-command's parser once (an alias's parser is its command's)."""
    seen, out = set(), {}
    for name, p in all_parsers().items():
        if name != "tomodrgn" and id(p) not in seen:
            seen.add(id(p))
            out[name] = p
    return out


def _ours(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The visible options of our own spelling (not help, not hidden aliases, not the tomoDRGN group)."""
    compat = {id(a) for g in p._action_groups if "tomoDRGN" in (g.title or "") for a in g._group_actions}
    return [a for a in p._actions if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS
            and id(a) not in compat]  # fmt: skip


def _rendered_help(p: argparse.ArgumentParser, a: argparse.Action) -> str:
    return p._get_formatter()._expand_help(a) if a.help else ""


def _name(a: argparse.Action) -> str:
    return "/".join(a.option_strings) or a.dest


def test_every_option_has_help_with_its_unit():
    missing, unitless = [], []
    for cmd, p in _commands().items():
        for a in p._actions:
            if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
                continue
            text = _rendered_help(p, a)
            if not text.strip():
                missing.append(f"{cmd} {_name(a)}")
            kind = getattr(a.type, "__name__", "")
            if a in _ours(p) and (kind in ("int", "float", "epoch_number") or a.type in (int, float)):
                if not any(w in text for w in UNIT_WORDS):
                    unitless.append(f"{cmd} {_name(a)}: {text}")
    assert missing == [], f"options without help: {missing}"
    assert unitless == [], "numbers whose help names no unit:\n" + "\n".join(unitless)


def test_defaults_are_shown_once():
    twice, unshown = [], []
    for cmd, p in _commands().items():
        for a in _ours(p):
            text = _rendered_help(p, a)
            n = text.lower().count("default")
            switch = isinstance(a, argparse.BooleanOptionalAction)  # --x / --no-x: either form may be the default
            meaningful = a.option_strings and (switch or a.default not in (None, False, argparse.SUPPRESS, []))
            if n > 1:
                twice.append(f"{cmd} {_name(a)}: {text}")
            elif meaningful and n == 0:
                unshown.append(f"{cmd} {_name(a)}: {text}")
    assert twice == [], "defaults shown twice:\n" + "\n".join(twice)
    assert unshown == [], "defaults not shown:\n" + "\n".join(unshown)


def test_one_spelling_per_concept():
    wrong = []
    for cmd, p in _commands().items():
        for a in _ours(p):
            if a.dest in CANONICAL and a.option_strings != CANONICAL[a.dest]:
                wrong.append(f"{cmd} {_name(a)} (a {a.dest}: {'/'.join(CANONICAL[a.dest])})")
            if set(a.option_strings) & OLD_SPELLINGS:
                wrong.append(f"{cmd} {_name(a)}")
            if "-D" in a.option_strings and a.dest != "box_size":
                wrong.append(f"{cmd} -D is not --box-size")
    assert wrong == [], "spellings other than the vocabulary's:\n" + "\n".join(wrong)


def test_old_spellings_are_hidden_aliases(capsys, tmp_path):
    """Spellings of earlier versions still run (hidden from --help): a positional output folder, filter_star
    --indices; -D and --box-size are one option everywhere."""
    small = ("--preset", "homogeneous", "--n-particles", "3", "-D", "16", "--n-tilts", "3", "--seed", "1")
    assert run_cli(capsys, "simulate", tmp_path / "old", *small).returncode == 0
    assert run_cli(capsys, "simulate", "-o", tmp_path / "new", *small).returncode == 0
    old, new = (tmp_path / "old" / "particles.star").read_text(), (tmp_path / "new" / "particles.star").read_text()
    assert old.split("\n", 2)[2] == new.split("\n", 2)[2]  # the same set (below starfile's dated header line)
    assert_user_error(run_cli(capsys, "simulate", tmp_path / "a", "-o", tmp_path / "b", *small), "given twice")
    assert_user_error(run_cli(capsys, "simulate", *small), "required: -o/--outdir")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    (tmp_path / "ind.txt").write_text("2\n0\n")
    star = tmp_path / "new" / "particles.star"
    for flag in ("--ind", "--indices"):
        res = run_cli(capsys, "filter_star", star, "-o", tmp_path / f"{flag[2:]}.star", flag, tmp_path / "ind.txt")
        assert res.returncode == 0, res.stderr
    assert (tmp_path / "ind.star").read_text().split("\n", 2)[2] == (tmp_path / "indices.star").read_text().split(
        "\n", 2
    )[2]
    parsers = all_parsers()
    assert "--indices" not in parsers["filter_star"].format_help()
    for cmd in ("train_vae", "train_nn", "eval_vol", "downsample", "simulate", "demo"):
        ns, _ = parsers["tomodrgn"].parse_known_args([cmd, "x", "-o", "y", "-D", "24"])
        ns2, _ = parsers["tomodrgn"].parse_known_args([cmd, "x", "-o", "y", "--box-size", "24"])
        assert ns.box_size == ns2.box_size == 24, cmd


def test_epochs_are_counted_from_zero_everywhere():
    """One count in files, train.log, screen and help: the help of --epochs and of every --epoch says it."""
    from tomodrgn.api import EPOCH_COUNTING

    assert "counted from 0" in EPOCH_COUNTING
    said = {(cmd, a.dest): "counted from 0" in _rendered_help(p, a) for cmd, p in _commands().items() for a in _ours(p)
            if a.dest in ("epoch", "epochs")}  # fmt: skip
    assert len(said) >= 9 and all(said.values()), said
