"""glibc's mmap threshold fixed at 4 MiB (runtime/mmap_threshold.py): a freed large block leaves the resident set
even where a small block allocated after it is still in use, which glibc's rising threshold does not allow."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# In a fresh interpreter: free a 30 MiB block (glibc's threshold rises to 30 MiB), then allocate and touch 16 MiB,
# allocate a small block after it and keep it, free the 16 MiB: how many MiB of it stay resident.
PINNED = """
import ctypes, re, sys
from tomodrgn.runtime.mmap_threshold import fix_mmap_threshold
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold() and fix_mmap_threshold()
MB = 1 << 20
block = libc.malloc(30 * MB); ctypes.memset(block, 1, 30 * MB); libc.free(block)
before = rss()
big = libc.malloc(16 * MB); ctypes.memset(big, 1, 16 * MB)
small = libc.malloc(64)
libc.free(big)
print(rss() - before)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt's threshold is glibc's")
def test_freed_large_block_leaves_the_resident_set_only_with_the_fixed_threshold():
    def kept(mode: str) -> float:
        env = {"PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", PINNED, mode], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    assert kept("glibc") >= 15  # the rising threshold: the 16 MiB stays in the heap below the small block
    assert kept("fixed") <= 1


# In a fresh interpreter: importing does not touch the threshold; load_model or training does, first thing (here
# before either fails on a path that does not exist).
CALLED_BY = """
import sys
from tomodrgn.runs import load_model
from tomodrgn.runtime import mmap_threshold
from tomodrgn.training import iter_train
assert mmap_threshold._applied is None
try:
    if sys.argv[1] == "load_model":
        load_model(sys.argv[2])
    else:
        next(iter_train(sys.argv[2], sys.argv[3]))
except Exception:
    pass
print(mmap_threshold._applied, mmap_threshold.threshold_note())
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt's threshold is glibc's")
@pytest.mark.parametrize("entry", ["load_model", "train"])
def test_training_and_load_model_fix_the_threshold(entry, tmp_path):
    argv = [str(tmp_path / "run")] if entry == "load_model" else [str(tmp_path / "no.star"), str(tmp_path / "run")]
    out = subprocess.run([sys.executable, "-c", CALLED_BY, entry, *argv], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1) == [
        str(4 << 20),
        "mmap threshold: fixed at 4 MiB (freed large buffers leave the resident set)\n",
    ]
