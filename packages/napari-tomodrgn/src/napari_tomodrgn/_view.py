"""Where decoded volumes appear in the viewer, and the viewer's units (Å scale bar, z/y/x axes).

World coordinates are Å (layers carry their voxel size as scale). A decoded volume is an Image layer marked
``metadata["tomodrgn_decoded"] = True`` (the overlay's tomogram list leaves such layers out), centred with
:func:`tomodrgn.api.volume_translate` on a point chosen by the widget (beside the picked particle, or beside
everything else in the scene); the view then moves to it: the z slider goes to its centre and the camera centres it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DECODED = "tomodrgn_decoded"
AXIS_LABELS = ("z", "y", "x")


def setup_viewer(viewer: Any) -> None:
    """Scale bar in Å, visible; axes named z, y, x (re-applied when layers change the number of dimensions)."""
    viewer.scale_bar.visible = True
    if not getattr(viewer, "_tomodrgn_units", False):
        viewer._tomodrgn_units = True  # connect once per viewer
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
) -> Any:
    """Add or update Image layer ``name`` holding ``vol`` (voxel ``pixel_size`` Å) centred on ``center`` (Å, z y x)
    and move the view to it (``context`` × its width in view: room for the particle beside it). Returns the layer."""
    from tomodrgn.api import volume_translate

    scale = (float(pixel_size),) * 3
    translate = tuple(volume_translate(center, vol.shape, pixel_size))
    limits = (float(vol.min()), float(vol.max()) + 1e-12)
    meta = {DECODED: True, **(metadata or {})}
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data, layer.scale, layer.translate = vol, scale, translate
        layer.contrast_limits = limits
        layer.metadata.update(meta)
    else:
        layer = viewer.add_image(
            vol, name=name, scale=scale, translate=translate, colormap="magma", blending="additive",
            contrast_limits=limits, metadata=meta, units=("angstrom",) * 3, axis_labels=AXIS_LABELS,
        )  # fmt: skip
    focus(viewer, np.asarray(center, dtype=float), extent=float(max(vol.shape[-2:]) * pixel_size) * context)
    return layer


def focus(viewer: Any, center: np.ndarray, extent: float) -> None:
    """Move the z slider to ``center``'s z and centre the camera on it; zoom so ``extent`` Å fits, unless it already
    fits and is not tiny (the user's zoom is kept when it is reasonable)."""
    nd = viewer.dims.ndim
    if nd >= 3:
        viewer.dims.set_point(nd - 3, float(center[-3]))
    viewer.camera.center = tuple(float(c) for c in center[-3:])
    canvas = getattr(getattr(viewer.window, "_qt_viewer", None), "canvas", None)
    size = min(canvas.size) if canvas is not None else 600
    target = 0.8 * size / max(extent, 1e-6)
    if size > 0 and not target / 4 <= viewer.camera.zoom <= target:
        viewer.camera.zoom = target


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
    cy, cx = viewer.camera.center[-2:]
    return bool(lo[0] <= z <= hi[0] and lo[1] <= cy <= hi[1] and lo[2] <= cx <= hi[2])
