"""Movies from the viewer's 3-D canvas: a turntable turn around the scene (the populated tomogram, its particles).

The frames are screenshots of napari's canvas, so the movie shows what the viewer shows (every visible layer, their
colours, the camera's centre and zoom). The camera circles the tomogram's z axis (the beam axis) at an elevation
above its x-y plane, looking at the camera's centre; the turn starts from the side of −y (the bottom of the default
view), and the camera is put back afterwards. One frame is taken per Qt timer tick, so the UI stays responsive while
a movie is recorded; the file is written by the core (:func:`tomodrgn.api.write_movie`: GIF or MP4, under a temporary
name until complete) in a thread worker. Traversal movies do not need the viewer: the Latent tab renders them with
the core (:func:`tomodrgn.api.render_movie`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TURN_FRAMES = 36
TURN_ELEVATION = 30.0  # degrees above the tomogram's x-y plane


def turntable_directions(
    n_frames: int = TURN_FRAMES, elevation: float = TURN_ELEVATION, turn: float = 360.0
) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """Camera (view direction, up direction) per frame, world (z, y, x), for a turn of ``turn`` degrees about the z
    axis at ``elevation`` degrees above the x-y plane; the first frame looks from −y, with z tilted up on screen.

    With elevation 90° the first frame is the plugin's default 3-D view (down the z axis, y up). A full turn does
    not repeat its first frame.
    """
    e = np.deg2rad(elevation)
    frames = []
    for k in range(n_frames):
        a = np.deg2rad(turn * k / n_frames)
        c, s = np.cos(a), np.sin(a)
        pos = np.array([np.cos(e) * s, -np.cos(e) * c, np.sin(e)])  # camera position (x, y, z), unit length
        up = np.array([-np.sin(e) * s, np.sin(e) * c, np.cos(e)])  # orthogonal to pos, z-ward (y at e = 90°)
        view = -pos
        frames.append((tuple(float(v) for v in view[::-1]), tuple(float(v) for v in up[::-1])))
    return frames


def _fit(frame: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``frame`` cropped or padded (black, at the bottom and right) to ``shape``: the canvas may be resized while
    recording, a movie's frames must all have one size."""
    out = np.zeros(shape, dtype=frame.dtype)
    h, w = min(shape[0], frame.shape[0]), min(shape[1], frame.shape[1])
    out[:h, :w] = frame[:h, :w]
    return out


def record_turn(
    widget: Any,
    out: str | Path,
    n_frames: int = TURN_FRAMES,
    elevation: float = TURN_ELEVATION,
    fps: float = 10.0,
    done: Callable[[Any], None] | None = None,
    progress: Any = None,
) -> Any:
    """Record a turn around the scene of ``widget.viewer`` (3-D) and write it to ``out`` (.gif / .mp4, replaced).

    ``widget`` has the attributes of :func:`napari_tomodrgn._async.init_async` and a ``status`` line; ``progress``
    is an optional magicgui ProgressBar moved per frame. ``done(movie_frames)`` is called in the main thread after the
    file is written. Returns the QTimer that takes the frames (``widget.recording`` is True until the file is
    written); raises ``InputError`` for a bad file name.
    """
    from qtpy.QtCore import QTimer

    from napari_tomodrgn._async import report_error, run_in_thread
    from napari_tomodrgn._view import camera_of
    from tomodrgn.api import InputError, check_output_file, write_movie

    out = check_output_file(out, overwrite=True)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise InputError(f"{out}: a movie is written as .gif or .mp4")
    viewer = widget.viewer
    viewer.dims.ndisplay = 3
    camera = camera_of(viewer)
    saved = (camera.angles, camera.center, camera.zoom)
    directions = turntable_directions(n_frames, elevation)
    frames: list[np.ndarray] = []
    timer = QTimer(widget.native)
    timer.setInterval(0)
    widget.recording = True
    if progress is not None:
        progress.max, progress.value, progress.visible = n_frames, 0, True

    def finish(error: BaseException | None = None) -> None:
        timer.stop()
        camera.angles, camera.center, camera.zoom = saved
        if progress is not None:
            progress.visible = False
        if error is not None:
            widget.recording = False
            report_error(widget, error, "recording")
            return
        worker = run_in_thread(
            widget, write_movie, frames, out, fps, done=lambda n: _written(n), what=f"writing {out.name}…"
        )
        worker.finished.connect(lambda: setattr(widget, "recording", False))

    def _written(n: int) -> None:
        widget.status.value = f"wrote {out} ({n} frames, {n / fps:.1f} s)"
        if done is not None:
            done(n)

    def step() -> None:
        try:
            view, up = directions[len(frames)]
            camera.set_view_direction(view, up)
            shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
            frames.append(_fit(shot, frames[0].shape) if frames else np.ascontiguousarray(shot))
        except Exception as e:  # noqa: BLE001 - every failure becomes a message, the camera is restored
            finish(e)
            return
        if progress is not None:
            progress.value = len(frames)
        if len(frames) == n_frames:
            finish()

    timer.timeout.connect(step)
    widget.status.value = f"recording {n_frames} frames…"
    timer.start()
    return timer
