"""Every command line of the documentation runs as written (issue 35, "Docs that match").

The lines are read from the fenced shell blocks of README.md and docs/*.md (docs/cli.md aside: it is generated from
the parsers by docs/gen_cli_reference.py and tested with them): backslash continuations joined, trailing ``# …``
comments dropped. Each document's lines run in order, by the ``tomodrgn`` command (in this process:
:mod:`_cli_inprocess`), in one working folder, each exiting 0 and writing what it names (its ``-o`` path, its
default output folder, or the lines it prints). The tutorial's lines run on the tutorial's own simulation, which
stands in for the user's files as the tutorial says (``sim/particles.star`` for ``particles.star``, …).

Two things differ from typing the lines, both below in one place each:
- ``EPOCHS``: training lines run 2 epochs instead of the 20–40 written (the only substitution). The 0-based last
  epoch in later file names of that run (``analyze.29``, ``weights.39.pkl``, ``--epoch 39``) follows from it.
- ``EXCUSED``: lines that cannot run here by their nature, each with the reason; they must still be in the docs.
The README's ``tomodrgn demo`` (2,000 particles, 10 epochs: minutes) runs as written in a ``slow`` test.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli_inprocess import run_cli

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"docs/cli.md"}  # generated from the parsers (docs/gen_cli_reference.py), tested with them
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PROGRAMS = {"tomodrgn", "torchrun", "nox", "python3", "python", "pip", "napari"}

# The one cost cap: 2 training epochs instead of the 20–40 the docs write (30 epochs take minutes even on the
# tutorial's 64 particles). Nothing else of a line is changed.
EPOCHS = {
    "--epochs 20": "--epochs 2",
    "--epochs 30": "--epochs 2",
    "--epochs 40": "--epochs 2",
    "--num-epochs 40": "--num-epochs 2",
}

# Lines that cannot run in a test by their nature: line as written → why.
EXCUSED = {
    "python3 -m pip install nox && python3 -m nox -s demo": "installs nox from PyPI and builds a virtual environment "
    "(network); the run it makes is `tomodrgn demo`, run as written by test_readme_demo_line (slow)",
    "python3 -m pip install nox && python3 -m nox -s tests": "installs nox from PyPI and runs the whole test suite, "
    "this test included",
    "pip install ./packages/tomodrgn-core": "installs into the environment (the tests run in the installed one)",
    "pip install ./packages/napari-tomodrgn": "installs into the environment (the tests run in the installed one)",
    'pip install "./packages/tomodrgn-core[triton]"': "installs into the environment; Triton needs a CUDA GPU",
    "torchrun --nproc_per_node 4 -m tomodrgn.cli train_vae ...": "4 processes for several GPUs or nodes; `...` "
    "stands for the arguments of the line above (DDP on CPU is tested by tests/core/test_distributed.py)",
    "nox -s lint": "builds a nox environment from PyPI (network); the same ruff commands are the lint step",
    "nox -s bench": "builds a nox environment from PyPI; a benchmark of minutes (tests/core/test_bench.py runs the "
    "script at toy size)",
    "nox -s bench_scale -- --particles 2000 5000": "builds a nox environment from PyPI; 48 minutes on 2 cores",
    "nox -s bench_scale -- --particles 20000 --resume": "builds a nox environment from PyPI; hours on 2 cores",
    "nox -s bench_gpu": "needs a CUDA GPU (stops at once without one) and a nox environment from PyPI",
    "nox -s validate": "builds a nox environment from PyPI and runs the slow tests: hours on a CPU",
}
SLOW = {"tomodrgn demo": "2,000 particles, 10 epochs: about 5 minutes on 2 cores (test_readme_demo_line)"}

OUTPUT_OPTIONS = ("-o", "--outdir", "--output", "--out-z")
DEFAULT_FOLDER = {  # commands whose output folder is inside the run (their first argument) when no -o is given
    "analyze": r"analyze\.\d+",
    "analyze_volumes": r"analyze_volumes\.\d+",
    "pc_traversal": r"pc_traversal\.\d+",
    "graph_traversal": r"graph_traversal\.\d+",
    "convergence_vae": r"convergence",
    "convergence_nn": r"convergence_nn",
}
PRINTS = {  # commands that write nothing: what they print
    "view_config": "checkpoints",
    "cleanup": "would remove",
    "fsc": "FSC=0.143",
}
TRAINING = {"train_vae", "train_nn"}


# --- reading the docs -------------------------------------------------------------------------------------------


def doc_files() -> list[str]:
    return [
        "README.md",
        *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md") if f"docs/{p.name}" not in GENERATED),
    ]


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced block whose language is a shell's, in order."""
    blocks, current, lang = [], None, ""
    for line in text.splitlines():
        fence = re.match(r"\s*```\s*(\S*)\s*$", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence:
            if lang in SHELL_LANGUAGES:
                blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def block_commands(lines: list[str]) -> list[str]:
    """Command lines: continuations joined, comments and blank lines dropped, spaces collapsed."""
    out, pending = [], ""
    for raw in lines:
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(" ".join(line.split()))
    return out


def doc_blocks(doc: str) -> list[list[str]]:
    return [block_commands(b) for b in shell_blocks((ROOT / doc).read_text())]


def all_doc_lines() -> list[tuple[str, str]]:
    return [(doc, line) for doc in doc_files() for block in doc_blocks(doc) for line in block]


# --- the user's files: stand-ins from simulations ----------------------------------------------------------------


def _setup_run(capsys, *argv) -> None:
    res = run_cli(capsys, *argv)
    assert res.returncode == 0, (argv, res.stderr[-2000:])


def readme_inputs(capsys) -> None:
    """The README's RELION 5 / WarpTools chain reads a user's export and map: a simulated 2-D stack set, 24 particles
    at a 40-px box (so that its `downsample -D 32` crops) with 5 tilts, and one of its true volumes as the map."""
    _setup_run(capsys, "simulate", "-o", "Extract/job010", "--preset", "4-class", "--n-particles", "24", "-D", "40",
               "--n-tilts", "5", "--tilt-step", "15", "--format", "relion5", "--seed", "1")  # fmt: skip
    Path("Refine3D/job015").mkdir(parents=True)
    shutil.copy("Extract/job010/volumes/class_00.mrc", "Refine3D/job015/run_class001.mrc")


def tutorial_inputs(capsys) -> None:
    """As the tutorial says: its simulation (its first line, `sim/`) stands in for `particles.star` and
    `Extract/job010/optimisation_set.star`, and a true volume for the user's maps (links, resolved once `sim/` is
    written)."""
    section0 = (ROOT / "docs/tutorial.md").read_text().split("## 1.")[0]
    for says in ("`sim/particles.star` wherever it", "`sim/optimisation_set.star` for", "`sim/volumes/class_00.mrc`"):
        assert says in " ".join(section0.split()), f"the tutorial no longer says {says!r}: update the stand-ins"
    Path("Extract").mkdir()
    Path("Extract/job010").symlink_to("../sim", target_is_directory=True)
    Path("particles.star").symlink_to("sim/particles.star")
    Path("particles").symlink_to("sim/particles", target_is_directory=True)  # the STAR's relative stack paths
    for name in ("sta_map.mrc", "consensus_map.mrc"):
        Path(name).symlink_to("sim/volumes/class_00.mrc")


def tomodrgn_user_inputs(capsys) -> None:
    """The published tomoDRGN user's `particles.star`: a small simulated Warp-style set (24 particles, 16 px, 11
    tilts) written into the working folder."""
    _setup_run(capsys, "simulate", "-o", ".", "--preset", "4-class", "--n-particles", "24", "-D", "16", "--n-tilts",
               "11", "--tilt-step", "12", "--seed", "2")  # fmt: skip


# chain id → (document, index of its shell block or None for all, the user's files)
CHAINS: dict[str, tuple[str, int | None, Callable]] = {
    "README": ("README.md", None, readme_inputs),
    "tutorial": ("docs/tutorial.md", None, tutorial_inputs),
    "coming-from-tomodrgn-their-spelling": ("docs/coming-from-tomodrgn.md", 0, tomodrgn_user_inputs),
    "coming-from-tomodrgn-ours": ("docs/coming-from-tomodrgn.md", 1, tomodrgn_user_inputs),
}


def chain_lines(chain: str) -> list[str]:
    doc, block, _ = CHAINS[chain]
    blocks = doc_blocks(doc)
    lines = [line for b in (blocks if block is None else [blocks[block]]) for line in b]
    return [line for line in lines if line not in EXCUSED and line not in SLOW]


# --- running a line ---------------------------------------------------------------------------------------------


def as_run(line: str, last_epochs: dict[str, tuple[int, int]]) -> str:
    """``line`` with the ``EPOCHS`` cap, and the later file names of a capped run (``RUN/analyze.29``,
    ``RUN/weights.39.pkl``, ``--epoch 39`` on a line about RUN) following its last epoch."""
    for written, run in EPOCHS.items():
        if re.search(re.escape(written) + r"(?!\d)", line):
            line = re.sub(re.escape(written) + r"(?!\d)", run, line)
            argv = shlex.split(line)
            outdir = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--outdir")), None)
            if outdir is not None:
                last_epochs[outdir.rstrip("/")] = (int(written.split()[1]) - 1, int(run.split()[1]) - 1)
    for run_dir, (doc_last, run_last) in last_epochs.items():
        tokens = shlex.split(line)
        if not any(t == run_dir or t.startswith(run_dir + "/") for t in tokens):
            continue
        epoch = re.compile(rf"(?<=[A-Za-z_])\.{doc_last}(?=[./]|$)")
        tokens = [epoch.sub(f".{run_last}", t) if t.startswith(run_dir + "/") else t for t in tokens]
        line = re.sub(rf"--epoch {doc_last}(?!\d)", f"--epoch {run_last}", " ".join(tokens))
    return line


def expand(argv: list[str]) -> list[str]:
    """The shell's globbing (``centre_vol_*.mrc``)."""
    out = []
    for a in argv:
        if "*" in a:
            matches = sorted(glob.glob(a))
            assert matches, f"{a} matches no file"
            out += matches
        else:
            out.append(a)
    return out


def snapshot() -> set[str]:
    return {str(p) for p in Path(".").rglob("*")}


def check_output(argv: list[str], stdout: str, before: set[str]) -> None:
    """What the line names as its output is there."""
    command = argv[1]
    outputs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS]
    if outputs:
        for out in outputs:
            path = Path(out)
            assert path.is_file() or (path.is_dir() and any(path.iterdir())), f"{out} was not written"
        if command in TRAINING:
            assert (Path(outputs[0]) / "weights.pt").is_file() and (Path(outputs[0]) / "config.json").is_file()
            if "--resume" in argv:  # the run it resumes has finished its epochs
                assert "nothing to do" in stdout, stdout[-2000:]
    elif command in DEFAULT_FOLDER:
        new = [p for p in snapshot() - before if re.fullmatch(re.escape(argv[2]) + "/" + DEFAULT_FOLDER[command], p)]
        assert new and any(Path(new[0]).iterdir()), f"no new {argv[2]}/{DEFAULT_FOLDER[command]} folder"
    else:
        assert command in PRINTS, f"no expected output known for {' '.join(argv)}"
        assert PRINTS[command] in stdout, stdout[-2000:]


def run_doc_lines(capsys, lines: list[str]) -> list[tuple[float, str]]:
    import torch

    threads = torch.get_num_threads()
    last_epochs: dict[str, tuple[int, int]] = {}
    timings = []
    for line in lines:
        # Each line is its own process for a user. In one process, UMAP (numba) leaves torch with one thread per core,
        # which made the training lines after an `analyze` 5–10 times slower on the shared test machine.
        torch.set_num_threads(threads)
        run = as_run(line, last_epochs)
        argv = shlex.split(run)
        assert argv[0] == "tomodrgn", line
        before = snapshot()
        start = time.perf_counter()
        res = run_cli(capsys, *expand(argv[1:]))
        timings.append((time.perf_counter() - start, run))
        assert res.returncode == 0, (line, run, res.stderr[-3000:])
        assert "Traceback" not in res.stderr, (line, res.stderr[-3000:])
        check_output(argv, res.stdout, before)
    return timings


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chain", list(CHAINS))
def test_doc_lines_run_as_written(chain, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    CHAINS[chain][2](capsys)
    timings = run_doc_lines(capsys, chain_lines(chain))
    print("\n".join(f"{t:6.1f} s  {line}" for t, line in timings))


def test_every_doc_line_is_run_or_excused():
    run = {line for chain in CHAINS for line in chain_lines(chain)}
    lines = all_doc_lines()
    assert lines, "no command lines found"
    for doc, line in lines:
        assert line.split()[0] in PROGRAMS, f"{doc}: not a command line: {line!r}"
        assert line in run or line in EXCUSED or line in SLOW, f"{doc}: {line!r} is neither run nor excused"
    chained_docs = {doc for doc, _, _ in CHAINS.values()}
    for doc, line in lines:
        if line.startswith("tomodrgn ") and line not in SLOW:
            assert doc in chained_docs, f"{doc} has tomodrgn lines but no chain runs them"


def test_excused_lines_are_still_in_the_docs():
    lines = {line for _, line in all_doc_lines()}
    for line in [*EXCUSED, *SLOW]:
        assert line in lines, f"excused line no longer in the docs (remove it from the list): {line!r}"


def test_excused_lines_name_what_exists():
    """An excused line is not run, but what it names is there: nox sessions, install folders, the module."""
    noxfile = (ROOT / "noxfile.py").read_text()
    for line in EXCUSED:
        for session in re.findall(r"nox -s (\w+)", line):
            assert re.search(rf"@nox\.session\s*\ndef {session}\(", noxfile), f"no nox session {session}: {line}"
        for target in re.findall(r"pip install \"?\./([\w/-]+)", line):
            assert (ROOT / target / "pyproject.toml").is_file(), line
        if "-m tomodrgn.cli" in line:
            assert (ROOT / "packages/tomodrgn-core/src/tomodrgn/cli/__main__.py").is_file()


def test_epoch_cap_renames_only_the_capped_run():
    last: dict[str, tuple[int, int]] = {}
    assert as_run("tomodrgn train_vae p.star -o out/vae --zdim 8 --epochs 30", last).endswith("--epochs 2")
    assert as_run("tomodrgn filter_star p.star --labels out/vae/analyze.29/kmeans20/labels.npy", last).endswith(
        "out/vae/analyze.1/kmeans20/labels.npy"
    )
    assert as_run("tomodrgn movie other/analyze.29/vol_029.mrc", last) == "tomodrgn movie other/analyze.29/vol_029.mrc"
    assert as_run("tomodrgn eval_vol out/vae --epoch 29 -o v", last) == "tomodrgn eval_vol out/vae --epoch 1 -o v"
    assert as_run("tomodrgn analyze out/vae --ksample 29", last) == "tomodrgn analyze out/vae --ksample 29"


@pytest.mark.slow
def test_readme_demo_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "tomodrgn demo" in {line for _, line in all_doc_lines()}
    res = run_cli(capsys, "demo")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "demo_output").is_dir() and any((tmp_path / "demo_output").rglob("report.md"))
