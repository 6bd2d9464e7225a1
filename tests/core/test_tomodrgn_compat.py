"""The tomoDRGN-compatible options (``tomodrgn.cli.tomodrgn_compat``), one test per option: each is accepted by its
command's parser, in the "tomoDRGN-compatible options" group of its help; a renamed option sets ours to the value;
an option with no counterpart prints exactly one ``note:`` line naming it."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli

from tomodrgn.cli import build_parser
from tomodrgn.cli.tomodrgn_compat import GROUP_TITLE, OPTIONS, CompatUsageError, Option, translate
from tomodrgn.io.errors import InputError

POSITIONALS = {
    "backproject": ["s.star"],
    "backproject_voxel": ["s.star"],
    "downsample": ["s.star", "-D", "8"],
    "train_nn": ["s.star", "-o", "run"],
    "train_vae": ["s.star", "-o", "run"],
    "convergence_nn": ["run"],
    "convergence_vae": ["run"],
    "analyze": ["run"],
    "eval_vol": ["run", "-o", "vols"],
    "eval_images": ["run", "s.star"],
    "analyze_volumes": ["run"],
    "subtomo2chimerax": ["out"],
    "filter_star": ["s.star", "-o", "f.star"],
    "graph_traversal": ["z.pkl", "-o", "path", "--anchors", "0", "1"],
    "pc_traversal": ["z.pkl", "-o", "pcs"],
    "cleanup": ["run"],
}
OUTDIR = {"backproject": ["-o", "bp"], "backproject_voxel": ["-o", "bp"], "downsample": ["-o", "ds"]}
CASES = [(command, o) for command, options in OPTIONS.items() for o in options]


def value_of(o: Option) -> list[str]:
    """A value of the option's type (its last choice)."""
    kind = o.kind
    if kind.get("action") == "store_true":
        return []
    if "choices" in kind:
        return [kind["choices"][-1]]
    one = {int: "3", float: "0.5", Path: "x.pkl"}.get(kind.get("type"), "latest")
    return [one] * (2 if kind.get("nargs") == 2 else 1)


def parse(command: str, o: Option) -> tuple[argparse.Namespace, list[str]]:
    argv = [command, *POSITIONALS[command], *(OUTDIR.get(command, []) if o.flags[-1] != "--output" else [])]
    argv = [*argv, *o.flags[-1:], *value_of(o)] if o.flags[0].startswith("-") else [*argv, "ref.mrc"]
    return build_parser().parse_args(argv), argv


@pytest.mark.parametrize("command,option", CASES, ids=[f"{c}:{o.flags[-1]}" for c, o in CASES])
def test_option_is_accepted_and_translated(tmp_path, monkeypatch, command, option):
    monkeypatch.chdir(tmp_path)
    args, argv = parse(command, option)
    assert getattr(args, option.dest) is not None, argv  # registered under this spelling, not ours
    notes = []
    try:
        translate(args, notes.append)
    except (InputError, CompatUsageError) as e:  # a value with no counterpart here, or a file missing: one line
        assert option.to is None and option.note is None, e
        assert any(word in str(e) for word in (option.flags[-1], "x.pkl", "s.star", "--config", "required")), e
        return
    if option.note is not None:
        assert [n for n in notes if n.startswith(f"note: {option.flags[-1]}:")] == [
            f"note: {option.flags[-1]}: {option.note}"
        ], notes
    if option.to is not None and hasattr(args, option.to):
        raw = getattr(args, option.dest)
        assert getattr(args, option.to) == (option.convert(raw) if option.convert else raw), argv


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_shows_the_compatible_group(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert f"{GROUP_TITLE}:" in text
    first = next(o for o in OPTIONS[command] if o.flags[0].startswith("--"))
    assert text.index(GROUP_TITLE) < text.index(first.flags[0] + " ") or first.flags[0] in text


def test_uninvert_data_is_our_invert_and_the_default_is_ours():
    args = build_parser().parse_args(["backproject_voxel", "s.star", "--output", "m.mrc"])
    translate(args, lambda line: None)
    assert args.invert is False and args.outdir == Path(".") and args.map_name == "m"
    args = build_parser().parse_args(["backproject_voxel", "s.star", "--output", "m.mrc", "--uninvert-data"])
    translate(args, lambda line: None)
    assert args.invert is True


def test_our_spellings_are_untouched():
    args = build_parser().parse_args(["train_vae", "s.star", "-o", "run", "--epochs", "3", "--invert"])
    translate(args, lambda line: None)
    assert (args.epochs, args.invert, args.encoder, args.tomodrgn_spelling) == (3, True, "reference-frame", False)


def _blob(d: int, pixel_size: float, sigma_a: float = 20.0) -> np.ndarray:
    """A gaussian of ``sigma_a`` Å centred at voxel d/2, sampled on a d³ grid of ``pixel_size`` Å (analytic)."""
    x = (np.arange(d) - d // 2) * pixel_size
    r2 = x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2
    return np.exp(-r2 / (2 * sigma_a**2)).astype(np.float32)


def test_decoded_volume_postprocessing_matches_the_analytic_map():
    """eval_vol --box-size (tomoDRGN's --downsample), --lowpass and --invert: a smooth map cropped in Fourier space
    equals the same analytic map sampled at the coarser pixel size; inverted, its negative."""
    from tomodrgn.analysis.run_commands import postprocess_volume

    vol = _blob(32, 5.0)
    out, px = postprocess_volume(vol, 5.0, box_size=16)
    assert out.shape == (16, 16, 16) and px == pytest.approx(10.0)
    assert np.abs(out - _blob(16, 10.0)).max() < 2e-3
    neg, _ = postprocess_volume(vol, 5.0, invert=True)
    assert np.array_equal(neg, -vol)
    low, _ = postprocess_volume(vol, 5.0, lowpass=40.0)
    assert np.abs(low - vol).max() < 0.05 and np.abs(low).sum() > 0  # a 20 Å blob keeps its shape at 40 Å
    sharp = np.zeros_like(vol)
    sharp[16, 16, 16] = 1.0
    assert postprocess_volume(sharp, 5.0, lowpass=40.0)[0].max() < 0.1  # a point loses its high frequencies


def test_downsample_is_vol_crops_a_map(tmp_path, capsys):
    from tomodrgn.io.mrc import read_mrc, write_mrc

    write_mrc(tmp_path / "map.mrc", _blob(32, 5.0), 5.0)
    argv = ["downsample", tmp_path / "map.mrc", "--is-vol", "--downsample", "16", "--output", tmp_path / "small.mrc"]
    res = run_cli(capsys, *argv)
    assert res.returncode == 0, res.stderr
    small, px = read_mrc(tmp_path / "small.mrc")
    assert small.shape == (16, 16, 16) and px == pytest.approx(10.0)
    assert np.abs(small - _blob(16, 10.0)).max() < 2e-3


def test_filter_star_tomogram_writes_one_star_per_tomogram(tmp_path, capsys):
    import pandas as pd
    import starfile

    rows = pd.DataFrame({"rlnMicrographName": ["TS_01.tomostar"] * 3 + ["TS_02.tomostar"] * 2,
                         "rlnCoordinateX": np.arange(5.0), "rlnAngleRot": np.zeros(5)})  # fmt: skip
    starfile.write(rows, tmp_path / "vols.star")
    out = tmp_path / "sel.star"
    (tmp_path / "ind.txt").write_text("0\n2\n3\n")
    argv = ["filter_star", tmp_path / "vols.star", "--starfile-type", "volumeseries", "--ind", tmp_path / "ind.txt"]
    res = run_cli(capsys, *argv, "--tomogram", "all", "-o", out)
    assert res.returncode == 0, res.stderr
    assert list(starfile.read(out)["rlnCoordinateX"]) == [0.0, 2.0, 3.0]
    assert list(starfile.read(tmp_path / "sel_TS_01.tomostar.star")["rlnCoordinateX"]) == [0.0, 2.0]
    assert list(starfile.read(tmp_path / "sel_TS_02.tomostar.star")["rlnCoordinateX"]) == [3.0]
    res = run_cli(capsys, *argv, "--tomogram", "TS_09", "-o", tmp_path / "none.star")
    assert_user_error(res, "--tomogram TS_09")


def test_latent_files_read_in_every_format(tmp_path):
    """z as we write it (.npy, .txt) and as cryoDRGN / tomoDRGN pickle it (μ, then log σ²: the first is read)."""
    from tomodrgn.api import InputError, read_latents, write_latents_pickle

    mu = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.save(tmp_path / "z.npy", mu)
    np.savetxt(tmp_path / "z.txt", mu)
    write_latents_pickle(tmp_path / "z.pkl", mu, -mu)
    for name in ("z.npy", "z.txt", "z.pkl"):
        assert np.array_equal(read_latents(tmp_path / name), mu), name
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="bad.pkl: not a latent file"):
        read_latents(tmp_path / "bad.pkl")


def test_tomodrgn_file_names_answered_by_a_run_trained_in_our_spelling(tmp_path, capsys):
    """A run trained with our options has no weights.pkl / config.pkl / z.N.train.pkl: tomoDRGN's later command
    lines still find its model and latents by those names."""
    from tomodrgn.api import TrainConfig, read_mrc, simulate, train

    sim = simulate(tmp_path / "sim", n_particles=12, box_size=16, n_tilts=9, seed=1)
    run = tmp_path / "run"
    config = TrainConfig(batch_size=4, n_tilts=5, dec_arch="16x2", enc_arch_a="16x1", zdim=2, device="cpu", epochs=2)
    train(sim.star_path, run, config, progress=False)
    assert not list(run.glob("*.pkl"))  # our spelling writes none of tomoDRGN's files
    z1 = np.load(run / "z.1.npy")
    res = run_cli(capsys, "pc_traversal", run / "z.1.train.pkl", "-o", tmp_path / "pcs", "--dim", "1", "-n", "4")
    assert res.returncode == 0, res.stderr
    points = np.loadtxt(tmp_path / "pcs" / "pc1.txt")
    assert points.shape == (4, 2) and np.allclose(points.mean(0), z1.mean(0), atol=np.abs(z1).max())
    argv = ["--weights", run / "weights.0.pkl", "-c", run / "config.pkl", "--zfile", run / "z.1.train.pkl"]
    res = run_cli(capsys, "eval_vol", *argv, "-o", tmp_path / "vols", "--downsample", "8")
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "vols").glob("vol_*.mrc"))) == len(z1)
    assert read_mrc(tmp_path / "vols" / "vol_000.mrc")[0].shape == (8, 8, 8)  # --downsample 8: --box-size 8


def test_wrong_source_software_says_what_the_file_looks_like(tmp_path, capsys):
    import pandas as pd
    import starfile

    rows = pd.DataFrame({"rlnImageName": ["1@a.mrcs"], "rlnGroupName": ["p0"], "rlnAngleRot": [0.0]})
    starfile.write(rows, tmp_path / "warp.star")
    res = run_cli(capsys, "backproject_voxel", tmp_path / "warp.star", "--source-software", "warptools",
                  "--output", tmp_path / "m.mrc")  # fmt: skip
    assert_user_error(res, "--source-software warptools", "looks like a Warp/M image series", "--source-software auto")
    assert not (tmp_path / "m.mrc").exists()
    res = run_cli(
        capsys, "train_vae", tmp_path / "warp.star", "--outdir", tmp_path / "r", "--source-software", "cistem"
    )
    assert_user_error(res, "--source-software cistem", "not read here")
