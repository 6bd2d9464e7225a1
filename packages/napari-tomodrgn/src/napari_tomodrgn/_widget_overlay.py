"""Tomogram overlay: particles of a STAR file as Points + Vectors on a tomogram Image layer, coloured by cluster.

Geometry comes from :func:`tomodrgn.analysis.overlay.particle_overlay` (positions in tomogram voxels, reference z
axis as direction); the layers get the tomogram layer's scale so they line up with it. Cluster labels are the
k-means labels of the run's z when a run folder is given, else ``_rlnClassNumber``, else none. Selecting a point
shows that particle's decoded volume; *Place volumes* pastes every particle's volume into a tomogram-sized layer at
its pose (:func:`tomodrgn.analysis.overlay.place_volumes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox

from napari_tomodrgn._reader import overlay_layers
from napari_tomodrgn._run import LoadedRun, load_run

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN particle volume"
PLACED_LAYER = "tomoDRGN placed volumes"


class OverlayWidget(Container):
    """Dock widget: draw a STAR file's particles (position, orientation, cluster) on a tomogram layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.tomogram_layer = ComboBox(label="tomogram layer", choices=self._image_layers)
        self.star = FileEdit(label="particles STAR", mode="r", filter="*.star")
        self.coord_pixel = FloatSpinBox(label="coordinate pixel (Å, 0: stack)", min=0.0, max=1e4, value=0.0, step=0.1)
        self.tomogram = ComboBox(label="tomogram name", choices=["(all)"], value="(all)")
        self.run_dir = FileEdit(label="run folder (optional)", mode="d")
        self.k = SpinBox(label="k-means clusters", min=1, max=1000, value=8)
        self.show_btn = PushButton(text="Show particles")
        self.place_btn = PushButton(text="Place volumes")
        self.status = Label(label="status", value="")
        self.extend(
            [
                self.tomogram_layer,
                self.star,
                self.coord_pixel,
                self.tomogram,
                self.run_dir,
                self.k,
                self.show_btn,
                self.place_btn,
                self.status,
            ]
        )
        self.series: Any = None
        self.run: LoadedRun | None = None
        self.overlay: Any = None
        self.points_layer: Any = None
        self.star.changed.connect(self._star_changed)
        self.show_btn.changed.connect(lambda: self.show_particles())
        self.place_btn.changed.connect(lambda: self.place_volumes())
        self.viewer.layers.events.inserted.connect(lambda e: self.tomogram_layer.reset_choices())
        self.viewer.layers.events.removed.connect(lambda e: self.tomogram_layer.reset_choices())

    def _image_layers(self, *_) -> list[str]:
        from napari.layers import Image

        return [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3]

    def _read_series(self) -> Any:
        from tomodrgn.api import read_particles

        px = float(self.coord_pixel.value) or None
        return read_particles(Path(self.star.value), tomogram_pixel_size=px)

    def _star_changed(self, *_) -> None:
        try:
            self.series = self._read_series()
        except (OSError, ValueError) as e:
            self.status.value = f"cannot read STAR: {e}"
            return
        names = sorted(set(self.series.tomogram or []))
        self.tomogram.choices = ["(all)", *names]
        self.tomogram.value = names[0] if len(names) == 1 else "(all)"

    def show_particles(self, tomogram_layer: str | None = None, tomogram: str | None = None) -> list:
        """Add (or replace) the Points + Vectors layers of the particles on the chosen tomogram layer."""
        from tomodrgn.api import particle_overlay

        if self.series is None:
            self._star_changed()
            if self.series is None:
                return []
        layer_name = tomogram_layer or self.tomogram_layer.value
        if layer_name is None or layer_name not in self.viewer.layers:
            self.status.value = "choose a tomogram layer (a 3-D Image layer with its voxel size as scale)"
            return []
        tomo_layer = self.viewer.layers[layer_name]
        tomo_ps = float(tomo_layer.scale[-1])
        tomo_name = tomogram if tomogram is not None else self.tomogram.value
        tomo_name = None if tomo_name in (None, "(all)") else tomo_name
        labels = self._cluster_labels()
        self.overlay = particle_overlay(self.series, labels=labels, tomogram=tomo_name, tomogram_pixel_size=tomo_ps)
        name = Path(self.series.star_path).stem
        layers = []
        for data, meta, kind in overlay_layers(
            self.overlay, name=name, box_size=self.series.box_size, star_path=str(self.series.star_path),
            series=self.series,
        ):  # fmt: skip
            meta = {**meta, "scale": tuple(tomo_layer.scale), "translate": tuple(tomo_layer.translate)}
            if meta["name"] in self.viewer.layers:
                self.viewer.layers.remove(meta["name"])
            layers.append(getattr(self.viewer, f"add_{kind}")(data, **meta))
        self.points_layer = layers[0]
        self.points_layer.selected_data.events.items_changed.connect(self._on_point_selection)
        n_clusters = 0 if labels is None else len(np.unique(labels))
        self.status.value = f"{len(self.overlay.positions)} particles on {layer_name}, {n_clusters} clusters"
        return layers

    def _cluster_labels(self) -> np.ndarray | None:
        from tomodrgn.api import kmeans

        if self.run is None and self.run_dir.value and Path(self.run_dir.value).joinpath("weights.pt").exists():
            self.run = load_run(self.run_dir.value, star=self.series.star_path)
        if self.run is not None and self.run.z is not None:
            return kmeans(self.run.z, min(int(self.k.value), len(self.run.z)))[0]
        if self.series.class_label is not None:
            return np.asarray(self.series.class_label, dtype=np.int64)
        return None

    def _on_point_selection(self, *_) -> None:
        sel = sorted(self.points_layer.selected_data)
        if len(sel) == 1:
            self.show_particle(int(self.overlay.particle_indices[sel[0]]))

    def show_particle(self, particle: int) -> np.ndarray | None:
        """Show the volume decoded at particle ``particle``'s z (needs a run folder) in the particle-volume layer."""
        if self.run is None:
            self.status.value = "give a run folder to decode particle volumes"
            return None
        vol = self.run.volume(particle)
        scale = (self.run.pixel_size,) * 3
        if VOLUME_LAYER in self.viewer.layers:
            layer = self.viewer.layers[VOLUME_LAYER]
            layer.data, layer.scale = vol, scale
            layer.contrast_limits = (float(vol.min()), float(vol.max()) + 1e-12)
        else:
            layer = self.viewer.add_image(vol, name=VOLUME_LAYER, scale=scale, rendering="mip")
        layer.metadata["particle"] = particle
        self.status.value = f"particle {particle} ({self.series.particle_names[particle]})"
        return vol

    def place_volumes(self) -> Any:
        """Paste each shown particle's decoded volume into a tomogram-sized Image layer at its position and pose."""
        from tomodrgn.api import place_volumes

        if self.overlay is None or self.run is None:
            self.status.value = "show particles with a run folder first"
            return None
        tomo_layer = self.viewer.layers[self.tomogram_layer.value]
        vols = self.run.volumes(self.overlay.particle_indices)
        placed = place_volumes(
            vols,
            self.overlay.positions,
            self.overlay.rotations,
            tuple(tomo_layer.data.shape),
            self.run.pixel_size,
            self.overlay.pixel_size,
        )
        kw = {"scale": tuple(tomo_layer.scale), "translate": tuple(tomo_layer.translate)}
        if PLACED_LAYER in self.viewer.layers:
            layer = self.viewer.layers[PLACED_LAYER]
            layer.data = placed
        else:
            layer = self.viewer.add_image(placed, name=PLACED_LAYER, colormap="magma", blending="additive", **kw)
        self.status.value = f"placed {len(vols)} volumes"
        return layer
