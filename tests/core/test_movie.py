"""Movies without a display (``tomodrgn movie``): the renderer's view convention and geometry, frame counts of the
GIF and MP4 files for a turn and for a traversal, and the command's one-line errors."""

import numpy as np
import pytest
from _cli_inprocess import assert_user_error, run_cli
from PIL import Image

from tomodrgn.export.movie import render_movie, volume_movie, write_movie
from tomodrgn.export.render import render_surface, view_rotation
from tomodrgn.io.errors import InputError
from tomodrgn.io.mrc import write_mrc

D = 32
PS = 4.0  # Å per voxel


def blob(center_xyz=(0, 0, 0), sigma=3.0) -> np.ndarray:
    """Gaussian blob (z, y, x array) centred ``center_xyz`` voxels from the box centre (voxel D/2)."""
    z, y, x = np.mgrid[:D, :D, :D] - D // 2
    cx, cy, cz = center_xyz
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma**2)).astype(np.float32)


def lit_centroid(image: np.ndarray) -> np.ndarray:
    """(column, row) centroid of the lit pixels, relative to the image centre; +row is down."""
    rows, cols = np.nonzero(image.max(-1) > 0)
    return np.array([cols.mean(), rows.mean()]) - (np.array(image.shape[1::-1]) - 1) / 2


def test_ball_surface_radius_and_depth():
    """A ball's iso-surface: its silhouette area is π r² and the ray through its centre meets it r in front."""
    level = 0.5
    r = 3.0 * np.sqrt(-2 * np.log(level))  # voxels: where the Gaussian falls to the level
    out = render_surface(blob(), level, size=128, pixel_size=PS, radius=10.0)
    area = (out.image.max(-1) > 0).sum() * out.pixel**2
    assert area == pytest.approx(np.pi * (r * PS) ** 2, rel=0.03)
    centre_depth = out.depth[63:65, 63:65].mean()
    assert centre_depth == pytest.approx(r * PS, abs=0.1 * PS)
    assert np.isnan(out.depth[0, 0])


def test_view_convention_x_right_y_up_z_towards_the_viewer():
    """As ChimeraX shows a map: +x right, +y up, +z in front; turning (azimuth +90°) brings the front to the right,
    tilting (elevation +90°) brings the top to the front. The mirror image would swap one of these."""
    core = blob(sigma=2.5)
    level = 0.5
    at = {axis: core + blob(tuple(8 * (np.arange(3) == k)), 2.0) for k, axis in enumerate("xyz")}
    off = {axis: lit_centroid(render_surface(v, level, size=96).image) for axis, v in at.items()}
    assert off["x"][0] > 3 and abs(off["x"][1]) < 1
    assert off["y"][1] < -3 and abs(off["y"][0]) < 1  # up: smaller row
    front = {
        axis: render_surface(at[axis], level, size=96, radius=14).depth[47:49, 47:49].mean() for axis in "xyz"
    }  # the +z blob is met first on the central ray
    assert front["z"] > front["x"] + 4 and front["z"] > front["y"] + 4
    turned = lit_centroid(render_surface(at["z"], level, view_rotation(azimuth=90), size=96).image)
    assert turned[0] > 3
    tilted = render_surface(at["y"], level, view_rotation(elevation=90), size=96, radius=14)
    assert tilted.depth[47:49, 47:49].mean() > front["x"] + 4


@pytest.fixture(scope="module")
def traversal(tmp_path_factory):
    """Five volumes: a blob moving out along +x (a traversal's vol_NNN.mrc)."""
    folder = tmp_path_factory.mktemp("movie") / "pc1"
    folder.mkdir()
    for k in range(5):
        write_mrc(folder / f"vol_{k:03d}.mrc", blob(sigma=3.0) + blob((4 + 2 * k, 0, 0), 2.0), PS)
    return folder


def gif_frames(path) -> list[np.ndarray]:
    im = Image.open(path)
    frames = []
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB")))
    return frames


def test_turn_and_traversal_gifs_have_the_right_frames(traversal, tmp_path):
    turn = volume_movie([traversal / "vol_000.mrc"], tmp_path / "turn.gif", n_frames=12, size=64)
    frames = gif_frames(turn.path)
    assert turn.n_frames == len(frames) == 12 and frames[0].shape == (64, 64, 3)
    assert not np.array_equal(frames[0][:-4], frames[3][:-4])  # the view turned (the +x blob went behind)
    done = []
    series = volume_movie([traversal], tmp_path / "pc1.gif", size=64, bounce=True, progress=lambda *a: done.append(a))
    frames = gif_frames(series.path)
    assert series.n_frames == len(frames) == 8  # 0 1 2 3 4 3 2 1
    assert done[-1] == (8, 8) and len(done) == 8
    assert [p.name for p in series.volumes] == [f"vol_{k:03d}.mrc" for k in range(5)]
    # frame k shows volume 0 1 2 3 4 3 2 1: the same volume gives the same picture (bar aside); the blob moves right
    body = [f[:-4].astype(int) for f in frames]
    assert np.abs(body[3] - body[5]).max() <= 8 and np.abs(body[1] - body[7]).max() <= 8
    xs = [lit_centroid(b)[0] for b in body[:5]]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs
    # the position bar along the bottom grows
    bar = [int((f[-1].max(-1) > 0).sum()) for f in frames]
    assert bar == sorted(bar) and bar[-1] == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pc1.gif", "turn.gif"]  # no partial files left


def test_mp4_frame_count(traversal, tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    movie = volume_movie([traversal], tmp_path / "pc1.mp4", size=50, fps=5)
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(movie.path))
    assert movie.n_frames == n == 5 and secs == pytest.approx(1.0, abs=0.05)


def test_mp4_pads_odd_frame_sizes_without_resampling(tmp_path):
    """Screenshots of any canvas size become MP4 frames padded at the right and bottom to multiples of 16."""
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    frames = np.zeros((3, 37, 50, 3), np.uint8)
    frames[:, 10:20, 5:15] = 255  # a white square, at the same pixels after padding
    assert write_movie(frames, tmp_path / "odd.mp4", fps=5) == 3
    back = np.stack(list(imageio.get_reader(tmp_path / "odd.mp4", format="FFMPEG").iter_data()))
    assert back.shape == (3, 48, 64, 3)
    assert back[:, 12:18, 7:13].min() > 200 and back[:, 25:37, 20:50].max() < 40


def test_render_movie_of_arrays(traversal, tmp_path):
    """The array API (the plugin's path movies): one frame per volume, the level over all of them."""
    from tomodrgn.io.mrc import read_mrc

    vols = np.stack([read_mrc(p)[0] for p in sorted(traversal.glob("vol_*.mrc"))])
    movie = render_movie(vols, tmp_path / "path.gif", pixel_size=4.0, size=48, bounce=True)
    assert movie.n_frames == len(gif_frames(movie.path)) == 2 * len(vols) - 2 and movie.volumes == []
    with pytest.raises(InputError, match="3-D volumes"):
        render_movie(vols[0, 0], tmp_path / "flat.gif")


def test_interrupted_movie_leaves_no_file(traversal, tmp_path):
    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        volume_movie([traversal], tmp_path / "pc1.gif", size=32, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_movie_command(traversal, tmp_path, capsys):
    res = run_cli(capsys, "movie", traversal, "-o", tmp_path / "pc1.gif", "--size", "48", "--bounce")
    assert res.returncode == 0, res.stderr
    assert "8 frames" in res.stdout and len(gif_frames(tmp_path / "pc1.gif")) == 8
    assert_user_error(run_cli(capsys, "movie", traversal, "-o", tmp_path / "pc1.gif"), "pc1.gif", "--overwrite")
    assert_user_error(run_cli(capsys, "movie", tmp_path / "nope", "-o", tmp_path / "a.gif"), "nope")
    assert_user_error(run_cli(capsys, "movie", traversal, "-o", tmp_path / "a.avi"), "a.avi", ".gif or .mp4")
    assert_user_error(run_cli(capsys, "movie", traversal, "-o", tmp_path / "a.gif", "--color", "red"), "red")
    write_mrc(tmp_path / "other.mrc", np.zeros((8, 8, 8), np.float32) + np.arange(8), PS)
    bad = run_cli(capsys, "movie", traversal / "vol_000.mrc", tmp_path / "other.mrc", "-o", tmp_path / "b.gif")
    assert_user_error(bad, "other.mrc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.mrc", "pc1.gif"]
