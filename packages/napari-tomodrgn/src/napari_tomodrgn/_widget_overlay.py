"""Tomogram overlay: particles of a STAR file as Points + Vectors on a tomogram Image layer, coloured by cluster.

Geometry comes from :func:`tomodrgn.api.particle_overlay` (positions in tomogram voxels, reference z axis as
direction); the layers get the tomogram layer's scale so they line up with it. Cluster labels are the k-means labels
of the run's z when a run folder is given, else ``_rlnClassNumber``, else none; *clusters shown* hides or shows
clusters. Selecting one point decodes that particle's volume and shows it beside the particle (view moved there);
*Populate (3-D)* draws every shown particle's own volume as an iso-surface at its pose, one Surface layer per cluster
in the cluster's colour (:func:`tomodrgn.api.populated_surfaces`: meshes, never a tomogram-sized array). *Record
turn* writes a GIF/MP4 of a turn around the scene in 3-D (:func:`napari_tomodrgn._movie.record_turn`). Loading the
run, decoding, meshing and writing movies run in thread workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)

from napari_tomodrgn._async import compact, field_path, init_async, report_error, run_in_thread
from napari_tomodrgn._movie import TURN_FRAMES
from napari_tomodrgn._movie import record_turn as _record_turn
from napari_tomodrgn._reader import overlay_layers
from napari_tomodrgn._run import LoadedRun, load_run
from napari_tomodrgn._view import is_decoded, setup_viewer, show_volume

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN particle volume"
POPULATED_LAYER = "tomoDRGN populated"
POPULATED = "tomodrgn_populated"  # metadata key of the populated-tomogram Surface layers


def _labels_and_run(series: Any, run_dir: Path | None, k: int, run: LoadedRun | None):
    """Worker body: (cluster labels or None, loaded run or None) for the particles of ``series``."""
    from tomodrgn.api import kmeans

    if run is None and run_dir is not None:
        run = load_run(run_dir, star=series.star_path)
    if run is not None and run.z is not None:
        return kmeans(run.z, min(k, len(run.z)))[0], run
    if series.class_label is not None:
        return np.asarray(series.class_label, dtype=np.int64), run
    return None, run


class OverlayWidget(Container):
    """Dock widget: draw a STAR file's particles (position, orientation, cluster) on a tomogram layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        setup_viewer(napari_viewer)
        init_async(self)
        self.tomogram_layer = ComboBox(label="tomogram layer", choices=self._image_layers)
        self.star = FileEdit(label="particles STAR", mode="r", filter="*.star")
        self.coord_pixel = FloatSpinBox(label="coordinate pixel (Å, 0: stack)", min=0.0, max=1e4, value=0.0, step=0.1)
        self.tomogram = ComboBox(label="tomogram name", choices=["(all)"], value="(all)")
        self.run_dir = FileEdit(label="run folder (optional)", mode="d")
        self.k = SpinBox(label="k-means clusters", min=1, max=1000, value=8)
        self.show_btn = PushButton(text="Show particles")
        self.clusters = Select(label="clusters shown", choices=[], allow_multiple=True)
        self.clusters.native.setFixedHeight(90)
        self.populate_btn = PushButton(text="Populate (3-D)")
        self.populate_progress = ProgressBar(label="populating", min=0, max=1, value=0, visible=False)
        self.movie_file = FileEdit(label="movie (.gif/.mp4)", mode="w", filter="*.gif *.mp4")
        self.movie_frames = SpinBox(label="turn frames", min=2, max=720, value=TURN_FRAMES)
        self.movie_btn = PushButton(text="Record turn")
        self.movie_progress = ProgressBar(label="recording", min=0, max=1, value=0, visible=False)
        self.status = Label(label="status", value="")
        self.recording = False
        self.extend(
            [
                self.tomogram_layer,
                self.star,
                self.coord_pixel,
                self.tomogram,
                self.run_dir,
                self.k,
                self.show_btn,
                self.clusters,
                self.populate_btn,
                self.populate_progress,
                self.movie_file,
                self.movie_frames,
                self.movie_btn,
                self.movie_progress,
                self.busy,
                self.status,
            ]
        )
        compact(self)
        self.series: Any = None
        self.run: LoadedRun | None = None
        self.overlay: Any = None
        self.points_layer: Any = None
        self.vectors_layer: Any = None
        self._requested: int | None = None
        self.star.changed.connect(self._star_changed)
        self.show_btn.changed.connect(lambda: self.show_particles())
        self.populate_btn.changed.connect(lambda: self.populate())
        self.movie_btn.changed.connect(lambda: self.record_turn())
        self.clusters.changed.connect(lambda: self.show_clusters(self.clusters.value))
        self.viewer.layers.events.inserted.connect(lambda e: self.tomogram_layer.reset_choices())
        self.viewer.layers.events.removed.connect(lambda e: self.tomogram_layer.reset_choices())

    def _image_layers(self, *_) -> list[str]:
        """3-D Image layers that are not decoded volumes (those carry ``metadata['tomodrgn_decoded']``)."""
        from napari.layers import Image

        return [
            layer.name for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and not is_decoded(layer)
        ]  # fmt: skip

    def _read_series(self) -> Any:
        from tomodrgn.api import read_particles

        px = float(self.coord_pixel.value) or None
        return read_particles(field_path(self.star, "a particles STAR file"), tomogram_pixel_size=px)

    def _star_changed(self, *_) -> None:
        self.series = None
        try:
            self.series = self._read_series()
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e, "cannot read STAR")
            return
        self.run = None  # a run is tied to its STAR
        names = sorted(set(self.series.tomogram or []))
        self.tomogram.choices = ["(all)", *names]
        self.tomogram.value = names[0] if len(names) == 1 else "(all)"
        self.status.value = f"{self.series.n_particles} particles in {len(names) or 'unnamed'} tomogram(s)"

    def show_particles(self, tomogram_layer: str | None = None, tomogram: str | None = None):
        """Load the run / cluster labels (worker), then add (or replace) the Points + Vectors layers; returns the
        worker, or None if the input is incomplete (the reason is in the status line)."""
        if self.series is None:
            self._star_changed()
            if self.series is None:
                return None
        layer_name = tomogram_layer or self.tomogram_layer.value
        if layer_name is None or layer_name not in self.viewer.layers:
            report_error(self, "choose a tomogram layer (a 3-D Image layer with its voxel size as scale)")
            return None
        tomo_name = tomogram if tomogram is not None else self.tomogram.value
        tomo_name = None if tomo_name in (None, "(all)") else tomo_name
        run_dir = None
        if str(self.run_dir.line_edit.value).strip():
            run_dir = Path(self.run_dir.value)
        series, k = self.series, int(self.k.value)
        return run_in_thread(
            self, _labels_and_run, series, run_dir, k, self.run,
            done=lambda res: self._draw_particles(res, layer_name, tomo_name), what="clustering particles…",
        )  # fmt: skip

    def _draw_particles(self, result, layer_name: str, tomo_name: str | None) -> list:
        from tomodrgn.api import particle_overlay

        labels, self.run = result
        tomo_layer = self.viewer.layers[layer_name]
        try:
            ov = particle_overlay(
                self.series, labels=labels, tomogram=tomo_name, tomogram_pixel_size=tomo_layer.scale[-1]
            )
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e)
            return []
        self.overlay = ov
        name = Path(self.series.star_path).stem
        layers = []
        for data, meta, kind in overlay_layers(
            ov, name=name, box_size=self.series.box_size, star_path=str(self.series.star_path), series=self.series
        ):
            meta = {**meta, "translate": tuple(tomo_layer.translate)}
            if meta["name"] in self.viewer.layers:
                self.viewer.layers.remove(meta["name"])
            layers.append(getattr(self.viewer, f"add_{kind}")(data, **meta))
        self.points_layer, self.vectors_layer = layers
        self.vectors_layer.metadata["all_data"] = self.vectors_layer.data.copy()
        self.vectors_layer.metadata["all_colors"] = np.asarray(ov.colors)
        self.points_layer.selected_data.events.items_changed.connect(self._on_point_selection)
        present = [] if ov.labels is None else sorted(int(v) for v in np.unique(ov.labels))
        self.clusters.choices = present
        self.clusters.value = present
        self.status.value = f"{len(ov.positions)} particles on {layer_name}, {len(present)} clusters"
        return layers

    def show_clusters(self, clusters) -> None:
        """Show only the particles (points and direction vectors) of the given cluster labels."""
        if self.overlay is None or self.overlay.labels is None or self.points_layer is None:
            return
        mask = np.isin(self.overlay.labels, np.asarray(list(clusters), dtype=np.int64))
        self.points_layer.shown = mask
        vec = self.vectors_layer
        vec.data = vec.metadata["all_data"][mask]
        vec.edge_color = vec.metadata["all_colors"][mask] if mask.any() else "white"
        self.status.value = f"{int(mask.sum())} of {len(mask)} particles shown"

    def _on_point_selection(self, *_) -> None:
        sel = sorted(self.points_layer.selected_data)
        if len(sel) == 1:
            self.show_particle(int(self.overlay.particle_indices[sel[0]]), point=sel[0])

    def show_particle(self, particle: int, point: int | None = None):
        """Decode (worker) particle ``particle``'s volume and show it beside the particle; returns the worker."""
        from tomodrgn.api import volume_beside

        if self.run is None:
            report_error(self, "give a run folder and press Show particles to decode particle volumes")
            return None
        if point is None:
            point = int(np.flatnonzero(self.overlay.particle_indices == particle)[0])
        pos = np.asarray(self.points_layer.data_to_world(self.points_layer.data[point]), dtype=float)[-3:]
        run, name = self.run, self.series.particle_names[particle]
        self._requested = particle

        def done(vol: np.ndarray) -> None:
            if self._requested != particle:
                return
            center = volume_beside(pos, vol.shape[0] * run.pixel_size)
            show_volume(self.viewer, VOLUME_LAYER, vol, run.pixel_size, center, {"particle": particle})
            self.status.value = f"particle {particle} ({name})"

        return run_in_thread(self, run.volume, particle, done=done, what=f"decoding particle {particle} ({name})…")

    def populate(self):
        """Each shown particle's own decoded volume as an iso-surface at its pose: one Surface layer per cluster
        (worker; progress in the bar). The viewer goes to 3-D. Returns the worker, or None if there is nothing to do."""
        from tomodrgn.api import populated_surfaces

        if self.overlay is None or self.run is None:
            report_error(self, "show particles with a run folder first")
            return None
        tomo_layer = self.viewer.layers[self.tomogram_layer.value]
        ov, run = self.overlay, self.run
        keep = np.ones(len(ov.positions), bool) if self.points_layer is None else np.asarray(self.points_layer.shown)
        if not keep.any():
            report_error(self, "no particles shown: choose clusters first")
            return None
        idx = ov.particle_indices[keep]
        labels = None if ov.labels is None else ov.labels[keep]
        step = max(1, run.model.box_size // 32)  # marching-cubes step: ~32³ cells per particle, whatever the box

        def work(progress):
            return populated_surfaces(
                run.iter_volumes(idx), ov.positions[keep], ov.rotations[keep], run.pixel_size, ov.pixel_size,
                labels=labels, colors=ov.colors[keep], particle_indices=idx, step=step, progress=progress,
            )  # fmt: skip

        def done(surfaces) -> None:
            self.show_surfaces(surfaces, tomo_layer)
            n_tri = sum(len(s.mesh.faces) for s in surfaces)
            self.status.value = (
                f"{len(idx)} particles as surfaces in {len(surfaces)} cluster layer(s), {n_tri} triangles"
            )

        return run_in_thread(
            self, work, done=done, what=f"decoding and meshing {len(idx)} particles…", progress=self.populate_progress
        )

    def show_surfaces(self, surfaces: list, tomo_layer: Any) -> list:
        """Replace the populated-tomogram layers with one Surface layer per cluster (tomogram scale and translate)."""
        for layer in [layer for layer in self.viewer.layers if layer.metadata.get(POPULATED)]:
            self.viewer.layers.remove(layer)
        kw = {"scale": tuple(tomo_layer.scale), "translate": tuple(tomo_layer.translate)}
        layers = []
        for surf in surfaces:
            if not surf.mesh.n_vertices:
                continue
            name = f"{POPULATED_LAYER} · cluster {surf.label}" if surf.label is not None else POPULATED_LAYER
            colors = np.broadcast_to(np.asarray(surf.color, np.float32), (surf.mesh.n_vertices, 4))
            meta = {POPULATED: True, "cluster": surf.label, "particle_indices": surf.particle_indices}
            layers.append(
                self.viewer.add_surface(
                    (surf.mesh.vertices, surf.mesh.faces),
                    name=name,
                    vertex_colors=np.ascontiguousarray(colors),
                    shading="smooth",
                    metadata=meta,
                    units=tuple(tomo_layer.units),
                    **kw,
                )  # fmt: skip
            )
        self.viewer.dims.ndisplay = 3
        return layers

    def record_turn(self, out: str | Path | None = None, n_frames: int | None = None):
        """Write a turn around the scene in 3-D (the populated tomogram, the particles) to a GIF/MP4; returns the
        frame timer, or None (the reason in the status line)."""
        if self.recording:
            report_error(self, "a movie is being recorded: wait for it to finish")
            return None
        try:
            out = Path(out) if out is not None else field_path(self.movie_file, "a movie file (.gif or .mp4)")
            n = int(n_frames or self.movie_frames.value)
            return _record_turn(self, out, n, progress=self.movie_progress)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e, "record turn")
            return None
