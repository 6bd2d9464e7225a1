"""Movies from the plugin (real napari viewer under Xvfb): a turn around the populated tomogram recorded from the 3-D
canvas (Overlay tab) and a latent path rendered by the core (Latent tab); frame counts of the written GIF and MP4."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_widgets_3d import populate_with_phantoms, wait_idle

from napari_tomodrgn._movie import turntable_directions
from napari_tomodrgn._widget_latent import LatentWidget

pytestmark = pytest.mark.gui


def gif_frames(path) -> list[np.ndarray]:
    img = Image.open(path)
    out = []
    for k in range(img.n_frames):
        img.seek(k)
        out.append(np.asarray(img.convert("RGB")))
    return out


def test_turntable_directions_circle_the_z_axis_at_the_elevation():
    dirs = turntable_directions(8, elevation=30.0)
    assert len(dirs) == 8
    views = np.array([v for v, _ in dirs])  # (z, y, x)
    ups = np.array([u for _, u in dirs])
    np.testing.assert_allclose(np.linalg.norm(views, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose((views * ups).sum(1), 0, atol=1e-12)  # up ⟂ view
    np.testing.assert_allclose(-views[:, 0], np.sin(np.deg2rad(30)), atol=1e-12)  # looking down at 30°
    assert (ups[:, 0] > 0).all()  # the tomogram's +z is up on screen in every frame
    np.testing.assert_allclose(views[0], (-0.5, np.cos(np.deg2rad(30)), 0), atol=1e-12)  # first from −y
    np.testing.assert_allclose(views[4], (-0.5, -np.cos(np.deg2rad(30)), 0), atol=1e-12)  # half a turn: from +y
    assert len({tuple(np.round(v, 9)) for v in views}) == 8  # a full turn does not repeat its first frame
    # at 90° the first frame is the plugin's default 3-D view: down the z axis, y up
    (view, up), *_ = turntable_directions(4, elevation=90.0)
    np.testing.assert_allclose(view, (-1, 0, 0), atol=1e-12)
    np.testing.assert_allclose(up, (0, 1, 0), atol=1e-12)


@pytest.fixture
def populated(make_napari_viewer, tiny_star):
    """A shown viewer with a tomogram, its particles' surfaces (a chiral phantom at each STAR pose) and the widget."""
    viewer = make_napari_viewer(show=True)  # a shown window: its canvas renders for the screenshots
    _, w, _, _ = populate_with_phantoms(viewer, tiny_star)
    viewer.reset_view()
    return viewer, w


def test_record_turn_around_the_populated_tomogram(populated, qtbot, tmp_path):
    viewer, w = populated
    camera = (viewer.scene.camera.angles, viewer.scene.camera.center, viewer.scene.camera.zoom)
    first_view = viewer.screenshot(canvas_only=True, flash=False)
    timer = w.record_turn(tmp_path / "turn.gif", n_frames=6)
    assert timer is not None and w.recording
    assert w.movie_progress.value == 0  # frames are taken on timer ticks: the call returned at once (UI not frozen)
    qtbot.waitUntil(lambda: not w.recording, timeout=60_000)
    wait_idle(qtbot, w)
    assert w.movie_progress.max == 6 and not w.movie_progress.visible
    frames = gif_frames(tmp_path / "turn.gif")
    assert len(frames) == 6 and "6 frames" in w.status.value
    assert len({f.shape for f in frames}) == 1 and abs(frames[0].shape[0] - first_view.shape[0]) <= 4  # the canvas
    lit = [int((f.max(-1) > 40).sum()) for f in frames]
    assert min(lit) > 500, lit  # the surfaces are in every frame
    # the view turns: between neighbouring frames most of the particles' pixels change
    changed = [int((np.abs(a.astype(int) - b).max(-1) > 30).sum()) for a, b in zip(frames, frames[1:])]
    assert min(changed) > 0.5 * min(lit), (changed, lit)
    assert (
        viewer.scene.camera.angles,
        viewer.scene.camera.center,
        viewer.scene.camera.zoom,
    ) == camera  # the camera is put back
    assert sorted(p.name for p in tmp_path.glob("*turn*")) == ["turn.gif"]  # no partial file left
    # MP4 (any canvas size: padded to multiples of 16), counted by the encoder's own reader
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    w.record_turn(tmp_path / "turn.mp4", n_frames=4)
    qtbot.waitUntil(lambda: not w.recording, timeout=60_000)
    wait_idle(qtbot, w)
    n, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "turn.mp4"))
    assert n == 4


def test_record_turn_errors_are_one_line(populated, tmp_path):
    viewer, w = populated
    assert w.record_turn(tmp_path / "turn.avi") is None
    assert w.status.value.startswith("error: record turn:") and ".gif or .mp4" in w.status.value
    assert w.record_turn() is None and "movie file" in w.status.value  # the field is empty
    assert not w.recording and not list(tmp_path.glob("*turn*"))


def test_latent_path_movie(make_napari_viewer, qtbot, trained_run, tmp_path):
    viewer = make_napari_viewer()
    w = LatentWidget(viewer)
    w.load(trained_run)
    wait_idle(qtbot, w)
    assert w.save_path_movie(tmp_path / "path.gif") is None and "decode a path first" in w.status.value
    w.decode_path("PC1", 4)
    wait_idle(qtbot, w)
    worker = w.save_path_movie(tmp_path / "path.gif")
    assert worker is not None
    wait_idle(qtbot, w)
    frames = gif_frames(tmp_path / "path.gif")
    assert len(frames) == 6 and "6 frames" in w.status.value  # 4 volumes forth and back: 0 1 2 3 2 1
    # the same volume, the same picture (the bar aside; GIF palettes are per frame)
    np.testing.assert_allclose(frames[1][:-3], frames[5][:-3], atol=3)
    assert np.abs(frames[0].astype(int) - frames[3]).mean() > 0.5  # the ends of PC1 differ
