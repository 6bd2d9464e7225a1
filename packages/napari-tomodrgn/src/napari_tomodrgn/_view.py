"""Where decoded volumes appear in the viewer, and the viewer's units (Å scale bar, z/y/x axes).

World coordinates are Å (layers carry their voxel size as scale). The camera shows x right, y up and z towards the
viewer (:data:`CAMERA_ORIENTATION`), as ChimeraX and IMOD do: napari's own default (y down, z towards the viewer) is
a mirror image of a map stored as [z, y, x], so a chiral map would look like its enantiomer.

A decoded volume is an Image layer marked ``metadata["tomodrgn_decoded"] = True`` (the overlay's tomogram list
leaves such layers out), centred with :func:`tomodrgn.api.volume_translate` on a point chosen by the widget (beside
the picked particle, or beside everything else in the scene); the view then moves to it: the z slider goes to its
centre and the camera centres it.

In 3-D a decoded volume is drawn as an iso-surface (napari ``iso`` rendering); in 2-D as a slice. Its level comes
from the viewer's iso setting (:func:`set_iso`: mean + σ·std of the decoded volume, or the level enclosing a mass,
with :func:`tomodrgn.api.surface_threshold`), applied to every decoded layer and kept when a layer is updated.

The plugin's per-viewer settings (the iso setting; whether the viewer's units are set up) live in this module
(:func:`viewer_state`: a :class:`ViewerState` per napari viewer, held weakly), not as attributes on napari's
``Viewer``. Only napari's public API is used (``viewer.canvas.overlays.scale_bar``, ``viewer.scene.camera``,
``viewer.canvas.size``: napari >= 0.9).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DECODED = "tomodrgn_decoded"
LEVEL_VOLUMES = "tomodrgn_level_volumes"  # metadata: the volume(s) a decoded layer's iso level is computed from
AXIS_LABELS = ("z", "y", "x")
# napari camera orientation (depth, vertical, horizontal axis = z, y, x): a right-handed view of [z, y, x] arrays
CAMERA_ORIENTATION = ("towards", "up", "right")


@dataclass
class ViewerState:
    """What the plugin keeps per napari viewer."""

    units_set_up: bool = False  # camera orientation set and the axis-label hook connected (once per viewer)
    iso: dict[str, float] = field(default_factory=dict)  # {"sigma": k} or {"mass_kda": m}; empty: the default σ


_STATES: weakref.WeakKeyDictionary[Any, ViewerState] = weakref.WeakKeyDictionary()


def viewer_state(viewer: Any) -> ViewerState:
    """The plugin's state for ``viewer`` (created on first use; dropped with the viewer).

    A plugin widget gets the viewer wrapped in a napari proxy (a new wrapper per widget, with wrapt's public
    ``__wrapped__``), so the state is keyed by the viewer it wraps: every widget and the reader share one state.
    """
    return _STATES.setdefault(getattr(viewer, "__wrapped__", viewer), ViewerState())


def camera_of(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9; ``viewer.camera`` is deprecated there)."""
    return viewer.scene.camera


def setup_viewer(viewer: Any) -> None:
    """Scale bar in Å, visible; axes named z, y, x (re-applied when layers change the number of dimensions); the
    camera in :data:`CAMERA_ORIENTATION` (x right, y up, z towards the viewer: maps in their own hand, not mirrored),
    set once per viewer (a user's later change is kept)."""
    viewer.canvas.overlays.scale_bar.visible = True
    state = viewer_state(viewer)
    if not state.units_set_up:
        state.units_set_up = True  # connect once per viewer
        camera_of(viewer).orientation = CAMERA_ORIENTATION
        viewer.layers.events.inserted.connect(lambda e: _label_axes(viewer))
    _label_axes(viewer)


def _label_axes(viewer: Any) -> None:
    nd = viewer.dims.ndim
    if nd >= 2:
        labels = list(viewer.dims.axis_labels)
        labels[-min(nd, 3) :] = AXIS_LABELS[-min(nd, 3) :]
        viewer.dims.axis_labels = tuple(labels)


def is_decoded(layer: Any) -> bool:
    return bool(layer.metadata.get(DECODED, False))


def show_volume(
    viewer: Any,
    name: str,
    vol: np.ndarray,
    pixel_size: float,
    center: np.ndarray,
    metadata: dict | None = None,
    context: float = 3.0,
    level_volumes: np.ndarray | None = None,
) -> Any:
    """Add or update Image layer ``name`` holding ``vol`` (voxel ``pixel_size`` Å) centred on ``center`` (Å, z y x)
    and move the view to it (``context`` × its width in view: room for the particle beside it). Returns the layer.

    The layer renders as an iso-surface in 3-D at the viewer's iso setting, computed from ``level_volumes`` (default
    ``vol``; a row of path volumes passes the volumes themselves, without the gaps between them).
    """
    from tomodrgn.api import volume_translate

    scale = (float(pixel_size),) * 3
    translate = tuple(volume_translate(center, vol.shape, pixel_size))
    limits = (float(vol.min()), float(vol.max()) + 1e-12)
    meta = {DECODED: True, LEVEL_VOLUMES: vol if level_volumes is None else level_volumes, **(metadata or {})}
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data, layer.scale, layer.translate = vol, scale, translate
        layer.contrast_limits = limits
        layer.metadata.update(meta)
    else:
        layer = viewer.add_image(
            vol, name=name, scale=scale, translate=translate, colormap="magma", blending="additive",
            contrast_limits=limits, metadata=meta, units=("angstrom",) * 3, axis_labels=AXIS_LABELS,
            rendering="iso",
        )  # fmt: skip
    _apply_iso(layer, iso_setting(viewer))
    focus(viewer, np.asarray(center, dtype=float), extent=float(max(vol.shape[-2:]) * pixel_size) * context)
    return layer


def iso_setting(viewer: Any) -> dict:
    """The viewer's iso setting for decoded volumes: ``{"sigma": k}`` (mean + k·std) or ``{"mass_kda": m}``."""
    from tomodrgn.api import DEFAULT_SIGMA

    return dict(viewer_state(viewer).iso or {"sigma": DEFAULT_SIGMA})


def iso_level(layer: Any, sigma: float | None = None, mass_kda: float | None = None) -> float:
    """Iso-surface level (data units) of decoded ``layer``: mean + ``sigma``·std of its volume(s), or, with
    ``mass_kda``, the level enclosing that mass of protein in each volume."""
    from tomodrgn.api import DEFAULT_SIGMA, surface_threshold

    vols = np.asarray(layer.metadata.get(LEVEL_VOLUMES, layer.data))
    n_volumes = vols.shape[0] if vols.ndim == 4 else 1
    pixel_size = float(layer.scale[-1])
    if mass_kda:
        return surface_threshold(vols, pixel_size, mass_kda=mass_kda * n_volumes)
    return surface_threshold(vols, sigma=DEFAULT_SIGMA if sigma is None else sigma)


def set_iso(viewer: Any, sigma: float | None = None, mass_kda: float | None = None) -> None:
    """Set the viewer's iso setting (σ above the mean, or a mass in kDa when ``mass_kda`` > 0) and apply it to every
    decoded layer; layers decoded later use it too."""
    setting = {"mass_kda": float(mass_kda)} if mass_kda else {"sigma": float(sigma)}
    viewer_state(viewer).iso = setting
    for layer in viewer.layers:
        if is_decoded(layer):
            _apply_iso(layer, setting)


def _apply_iso(layer: Any, setting: dict) -> None:
    from tomodrgn.api import InputError

    try:
        layer.iso_threshold = iso_level(layer, **setting)
    except InputError:  # a constant volume (e.g. an untrained decoder) has no surface: keep the level
        pass


def focus(viewer: Any, center: np.ndarray, extent: float) -> None:
    """Move the z slider to ``center``'s z and centre the camera on it; zoom so ``extent`` Å fits, unless it already
    fits and is not tiny (the user's zoom is kept when it is reasonable)."""
    nd = viewer.dims.ndim
    if nd >= 3:
        viewer.dims.set_point(nd - 3, float(center[-3]))
    camera = camera_of(viewer)
    camera.center = tuple(float(c) for c in center[-3:])
    size = min(viewer.canvas.size)  # canvas pixels (height, width), kept up to date by napari's Qt canvas
    target = 0.8 * size / max(extent, 1e-6)
    if size > 0 and not target / 4 <= camera.zoom <= target:
        camera.zoom = target


def beside_scene(viewer: Any, extent: float, exclude: str | None = None) -> np.ndarray:
    """Centre (Å, z y x) for a volume of edge ``extent`` Å to the right (+x) of every other layer, at the current z.

    With no other layer: the origin.
    """
    others = [layer for layer in viewer.layers if layer.name != exclude and layer.ndim == 3]
    if not others:
        return np.zeros(3)
    lo = np.min([layer.extent.world[0][-3:] for layer in others], axis=0)
    hi = np.max([layer.extent.world[1][-3:] for layer in others], axis=0)
    z = float(viewer.dims.point[-3]) if viewer.dims.ndim >= 3 else float((lo[0] + hi[0]) / 2)
    return np.array([z, (lo[1] + hi[1]) / 2, hi[2] + 0.75 * extent])


def visible_in_view(viewer: Any, layer: Any) -> bool:
    """True when the current z slice cuts ``layer`` and the camera centre (y, x) lies inside it (2-D view)."""
    lo, hi = (np.asarray(e)[-3:] for e in layer.extent.world)
    z = float(viewer.dims.point[-3])
    cy, cx = camera_of(viewer).center[-2:]
    return bool(lo[0] <= z <= hi[0] and lo[1] <= cy <= hi[1] and lo[2] <= cx <= hi[2])
