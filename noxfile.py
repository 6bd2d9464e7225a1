"""Project automation. `nox -s tests` is the README's test command and what CI runs (.ci/run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CORE = "packages/tomodrgn-core"
PLUGIN = "packages/napari-tomodrgn"
# Test environments pin torch (a CPU wheel on these machines) and triton; package metadata pins nothing.
PINS = ["torch==2.13.0", "triton==3.8.0"]

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extras: str, plugin: bool = True) -> None:
    """Install the pins, the core (with ``extras``) and, if asked, the plugin (with its test extra when testing)."""
    session.install("--upgrade", "pip")
    session.install(*PINS)
    targets = ["-e", f"{CORE}[{','.join(extras)}]" if extras else CORE]
    if plugin:
        targets += ["-e", f"{PLUGIN}[test]" if "test" in extras else PLUGIN]
    session.install(*PINS, *targets)


def _gui_system_deps(session: nox.Session) -> None:
    """Qt/napari need an X server (Xvfb + Mesa) and xcb libraries: install them where we can (root, apt)."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        session.run("bash", str(ROOT / ".ci/install-gui-deps.sh"), external=True)
    elif not shutil.which("Xvfb"):
        session.warn("Xvfb missing and not root: run .ci/install-gui-deps.sh with sudo for the napari tests")


@nox.session
def tests(session: nox.Session) -> None:
    """The full test suite (core + plugin), CPU only. Fails when no test ran (pytest exit code 5)."""
    _install(session, "test", "triton")
    _gui_system_deps(session)
    env = {"QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "xcb"), "OMP_NUM_THREADS": "2"}
    session.run("pytest", "-m", "not slow", "-p", "no:cacheprovider", *session.posargs, env=env)


@nox.session
def validate(session: nox.Session) -> None:
    """Full-size scientific validation on simulated data (FSC, ARI, CC); minutes to hours on CPU."""
    _install(session, "test", "triton", plugin=False)
    session.run("pytest", "-m", "slow", "tests/core", "-v", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: simulate the embedded 4-class dataset, train, analyse, print the summary."""
    _install(session, plugin=False)
    session.run("tomodrgn", "demo", "--outdir", "demo_output", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Training throughput (particles/s), peak memory, points per particle → bench_output/bench.json."""
    _install(session, "triton", plugin=False)
    session.run("python", "benchmarks/bench_train.py", "--out", "bench_output/bench.json", *session.posargs)


@nox.session
def bench_scale(session: nox.Session) -> None:
    """Every user stage at 2,000 / 5,000 / 20,000 particles (D = 64, 41 tilts): wall time, peak RSS, disk →
    bench_output/scale.json and a Markdown table (docs/benchmarks.md). Hours on 2 cores at 20,000; pass
    ``-- --particles 2000`` for a shorter run."""
    _install(session, plugin=False)
    session.run("python", "benchmarks/bench_scale.py", "--out", "bench_output/scale.json", *session.posargs)


@nox.session
def bench_gpu(session: nox.Session) -> None:
    """GPU benchmark: Triton kernels vs torch on the device, D = 64 / 128 training with and without --amp (and 2
    processes with 2 GPUs) → bench_output/bench_gpu.json; stops at once with one line where no GPU is present."""
    _install(session, "triton", plugin=False)
    session.run("python", "benchmarks/bench_gpu.py", *session.posargs)
