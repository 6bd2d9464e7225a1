"""Latent-space browser: PCA/UMAP scatter of z coloured by k-means cluster, click → volume, lasso → filtered STAR.

The scatter is a matplotlib canvas inside the dock widget. A left click selects the particle nearest to the click
(in the 2-D embedding) and shows the volume decoded at its z (LRU cache keyed by particle index) in the
``tomoDRGN particle volume`` Image layer. In *lasso* or *rectangle* mode a drag selects particles; *Save selection*
writes them as a filtered STAR (:func:`tomodrgn.export.selections.filter_star`, all columns kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath
from matplotlib.widgets import LassoSelector, RectangleSelector

from napari_tomodrgn._run import LoadedRun, load_run

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN particle volume"


def embed_latent(z: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates (n, 2) of z: ``pca`` (PC1, PC2) or ``umap`` (core :mod:`tomodrgn.analysis.latent`)."""
    from tomodrgn.api import pca, umap_embed

    if method == "umap":
        return umap_embed(z, seed=seed)
    coords = pca(z, 2).coords
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


class LatentWidget(Container):
    """Dock widget: scatter of the latent space of a trained run, with click-to-decode and selections."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.run_dir = FileEdit(label="run folder", mode="d")
        self.epoch = SpinBox(label="epoch (-1: latest)", min=-1, max=100000, value=-1)
        self.method = ComboBox(label="embedding", choices=["pca", "umap"], value="pca")
        self.k = SpinBox(label="k-means clusters", min=1, max=1000, value=8)
        self.load_btn = PushButton(text="Load")
        self.tool = ComboBox(label="selection tool", choices=["click", "lasso", "rectangle"], value="click")
        self.out_star = FileEdit(label="selection STAR", mode="w", filter="*.star")
        self.save_btn = PushButton(text="Save selection")
        self.status = Label(label="status", value="load a run folder")
        self.extend(
            [self.run_dir, self.epoch, self.method, self.k, self.load_btn, self.tool, self.out_star, self.save_btn]
        )
        self.figure = Figure(figsize=(4, 4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(250)
        self.ax = self.figure.add_subplot(111)
        self.native.layout().addWidget(self.canvas)
        self.append(self.status)
        self.run: LoadedRun | None = None
        self.coords: np.ndarray | None = None
        self.cluster_labels: np.ndarray | None = None
        self.selected: np.ndarray = np.empty(0, dtype=np.int64)
        self.current: int | None = None
        self.embedding = "pca"
        self._selector: Any = None
        self._scatter = self._highlight = self._marker = None
        self.canvas.mpl_connect("button_press_event", self._on_press)
        self.load_btn.changed.connect(lambda: self.load(self.run_dir.value))
        self.tool.changed.connect(self._set_tool)
        self.save_btn.changed.connect(lambda: self.save_selection(self.out_star.value))

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, run_dir: str | Path, epoch: int | None = None, method: str | None = None, k: int | None = None):
        """Load a run, embed z (PCA/UMAP), cluster it (k-means) and draw the scatter."""
        from tomodrgn.api import kmeans

        epoch = epoch if epoch is not None else (None if self.epoch.value < 0 else int(self.epoch.value))
        try:
            run = load_run(run_dir, epoch)
        except (OSError, ValueError, KeyError) as e:
            self.status.value = f"cannot load {run_dir}: {e}"
            return None
        if run.z is None:
            self.status.value = f"{run_dir}: homogeneous model (no latent space)"
            return None
        self.run = run
        self.embedding = method or self.method.value
        self.coords = embed_latent(run.z, self.embedding)
        k = int(k if k is not None else self.k.value)
        self.cluster_labels = kmeans(run.z, min(k, len(run.z)))[0]
        self.selected = np.empty(0, dtype=np.int64)
        self.current = None
        self._draw()
        self.status.value = f"{len(run.z)} particles, z dim {run.z.shape[1]}, epoch {run.model.epoch}"
        return run

    def _draw(self) -> None:
        from tomodrgn.api import cluster_colors

        self.ax.clear()
        self._scatter = self.ax.scatter(
            self.coords[:, 0], self.coords[:, 1], s=12, c=cluster_colors(self.cluster_labels), edgecolors="none"
        )
        self._highlight = self.ax.scatter([], [], s=40, facecolors="none", edgecolors="k", linewidths=1.0)
        (self._marker,) = self.ax.plot([], [], "r+", ms=14, mew=2)
        self.ax.set_xlabel("PC1" if self.embedding == "pca" else "UMAP1")
        self.ax.set_ylabel("PC2" if self.embedding == "pca" else "UMAP2")
        self.canvas.draw()
        self._set_tool(self.tool.value)

    # ---------------------------------------------------------------------------------------------- selection
    def _set_tool(self, tool: str) -> None:
        if self._selector is not None:
            self._selector.set_active(False)
            self._selector = None
        if tool == "lasso":
            self._selector = LassoSelector(self.ax, self.select_in_polygon)
        elif tool == "rectangle":
            self._selector = RectangleSelector(self.ax, self._on_rectangle, interactive=False)

    def _on_press(self, event) -> None:
        if self.tool.value != "click" or event.inaxes is not self.ax or event.button != 1 or self.coords is None:
            return
        self.select_point(event.xdata, event.ydata)

    def _on_rectangle(self, press, release) -> None:
        x0, x1 = sorted([press.xdata, release.xdata])
        y0, y1 = sorted([press.ydata, release.ydata])
        self.select_in_polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def select_point(self, x: float, y: float) -> int:
        """Select the particle nearest (x, y) in the embedding and show its volume; returns its index."""
        i = int(np.argmin(((self.coords - np.array([x, y])) ** 2).sum(1)))
        self.show_particle(i)
        return i

    def show_particle(self, i: int) -> None:
        """Decode (or fetch from the cache) particle ``i``'s volume into the particle-volume Image layer."""
        self.current = i
        vol = self.run.volume(i)
        scale = (self.run.pixel_size,) * 3
        name = self.run.series.particle_names[i]
        if VOLUME_LAYER in self.viewer.layers:
            layer = self.viewer.layers[VOLUME_LAYER]
            layer.data = vol
            layer.scale = scale
            layer.contrast_limits = (float(vol.min()), float(vol.max()) + 1e-12)
        else:
            layer = self.viewer.add_image(vol, name=VOLUME_LAYER, scale=scale, rendering="mip")
        layer.metadata.update(particle=i, particle_name=name, cluster=int(self.cluster_labels[i]))
        self._marker.set_data([self.coords[i, 0]], [self.coords[i, 1]])
        self.canvas.draw_idle()
        self.status.value = f"particle {i} ({name}), cluster {int(self.cluster_labels[i])}"

    def select_in_polygon(self, vertices) -> np.ndarray:
        """Select the particles inside a polygon (embedding coordinates); returns their sorted indices."""
        inside = MplPath(np.asarray(vertices, dtype=float)).contains_points(self.coords)
        self.selected = np.flatnonzero(inside).astype(np.int64)
        self._highlight.set_offsets(self.coords[self.selected] if len(self.selected) else np.empty((0, 2)))
        self.canvas.draw_idle()
        self.status.value = f"{len(self.selected)} particles selected"
        return self.selected

    def save_selection(self, out_star: str | Path) -> Path | None:
        """Write the selected particles as a filtered STAR (same flavour, every column kept)."""
        from tomodrgn.api import filter_star

        if self.run is None or len(self.selected) == 0:
            self.status.value = "nothing selected"
            return None
        out = filter_star(self.run.series, Path(out_star), indices=self.selected)
        self.status.value = f"wrote {len(self.selected)} particles to {out}"
        return out
