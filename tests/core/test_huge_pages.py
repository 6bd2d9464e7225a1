"""The training commands restart themselves with glibc's huge pages for large buffers (runtime/huge_pages.py): the
environment it asks for, and a real run of ``python -m tomodrgn.cli`` whose training log says what it got."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tomodrgn.runtime.huge_pages import TUNABLE, allocator_note, huge_page_environment, huge_pages_on
from tomodrgn.simulate.dataset import simulate_dataset

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc tunables exist on Linux with glibc only")
def test_environment_adds_the_tunable_once_and_respects_the_user():
    env = huge_page_environment({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}" and env["PATH"] == "/bin"  # others kept
    assert huge_pages_on(env) and huge_page_environment(env) is None  # the restarted process does not restart again
    # not even where the loader dropped GLIBC_TUNABLES (secure-exec): the restart is marked
    assert huge_page_environment({k: v for k, v in env.items() if k != "GLIBC_TUNABLES"}) is None
    assert huge_page_environment({})["GLIBC_TUNABLES"] == TUNABLE
    assert huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=2"}) is None  # the user's own choice
    assert huge_page_environment({"TOMODRGN_HUGE_PAGES": "0"}) is None  # switched off
    assert not huge_pages_on({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert huge_pages_on({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=2"})
    assert "huge pages" in allocator_note(env) and "4 KiB" in allocator_note({})


@pytest.mark.skipif(not GLIBC, reason="glibc tunables exist on Linux with glibc only")
def test_the_command_trains_with_huge_pages_unless_switched_off(tmp_path):
    sim = simulate_dataset(tmp_path / "sim", "homogeneous", n_particles=4, box_size=16, n_tilts=5, snr=None, seed=0)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GLIBC_TUNABLES", "TOMODRGN_HUGE_PAGES"))}
    for name, extra, expect in (
        ("on", {}, f"huge pages for large buffers ({TUNABLE})"),
        ("off", {"TOMODRGN_HUGE_PAGES": "0"}, "4 KiB"),
    ):
        run = tmp_path / name
        argv = ["train_nn", str(sim.star_path), "-o", str(run), "--epochs", "1", "--dec-arch", "16x2",
                "--device", "cpu"]  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "tomodrgn.cli", *argv], env={**base, **extra}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        log = (run / "train.log").read_text()
        assert f"; allocator: {expect}" in log and "; mmap threshold: fixed at 4 MiB" in log, log
