"""A movie with no visible density (issue 32, item 8): an iso level above the map's maximum (``--sigma 50``) still
writes the movie, with one ``warning:`` line naming the level, the map's range and a lower ``--sigma``; a level the
map reaches gives no warning."""

import re

import numpy as np
import pytest
from _cli_inprocess import run_cli
from PIL import Image, ImageSequence

from tomodrgn.api import render_movie, write_mrc

D = 16
pytestmark = pytest.mark.filterwarnings("always::UserWarning")  # the warning is what is tested (also under -W)


def _warnings(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture
def blob(tmp_path):
    z, y, x = np.mgrid[:D, :D, :D] - D // 2
    vol = np.exp(-(x**2 + y**2 + z**2) / (2 * 2.0**2)).astype(np.float32)
    return write_mrc(tmp_path / "blob.mrc", vol, 4.0), vol


def _lit_frames(path):
    with Image.open(path) as im:
        return [int((np.asarray(f.convert("RGB"))[:-3].max(-1) > 0).sum()) for f in ImageSequence.Iterator(im)]


def test_sigma_above_the_maximum_is_one_warning(blob, tmp_path, capsys):
    path, vol = blob
    level = float(vol.mean() + 50 * vol.std())
    assert level > vol.max()  # the premise: no voxel reaches mean + 50 SD
    res = run_cli(capsys, "movie", path, "-o", tmp_path / "dark.gif", "--sigma", "50", "--frames", "2", "--size", "32")
    assert res.returncode == 0, res.stderr
    lines = _warnings(res)
    assert len(lines) == 1 and lines[0].startswith("warning: iso level "), res.stderr
    shown = float(re.search(r"iso level (\S+) \(mean \+ 50 SD\)", lines[0]).group(1))
    assert shown == pytest.approx(level, rel=1e-3)
    lo, hi = (float(v) for v in re.search(r"values (\S+) to (\S+)\)", lines[0]).groups())
    assert lo == pytest.approx(float(vol.min()), abs=1e-3) and hi == pytest.approx(float(vol.max()), rel=1e-3)
    below = float(re.search(r"lower --sigma \(below (\S+) here", lines[0]).group(1))
    assert below == pytest.approx((vol.max() - vol.mean()) / vol.std(), rel=1e-2)
    assert (tmp_path / "dark.gif").exists()

    # the level suggested shows the blob; the default level too, without a warning
    res = run_cli(capsys, "movie", path, "-o", tmp_path / "lit.gif", "--sigma", f"{below / 2:.2f}", "--frames", "2",
                  "--size", "32")  # fmt: skip
    assert res.returncode == 0 and _warnings(res) == [], res.stderr
    assert min(_lit_frames(tmp_path / "lit.gif")) > 20
    assert max(_lit_frames(tmp_path / "dark.gif")) < min(_lit_frames(tmp_path / "lit.gif")) / 10


def test_series_warning_names_every_map(blob, tmp_path):
    _, vol = blob
    with pytest.warns(UserWarning, match=r"above the maximum of the 3 maps .*lower --sigma") as record:
        render_movie(np.stack([vol, 0.5 * vol, 0.25 * vol]), tmp_path / "s.gif", 4.0, sigma=80, size=32)
    assert len(record) == 1
