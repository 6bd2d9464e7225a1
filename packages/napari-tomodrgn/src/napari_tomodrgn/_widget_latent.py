"""Latent-space browser: PCA/UMAP scatter of z, click → volume, lasso → filtered STAR, volumes along a path.

The scatter is a matplotlib canvas (with its zoom/pan toolbar) inside the dock widget, coloured by a chosen quantity
(cluster, PC1, PC2, tomogram, defocus; legend or colour bar). A left click selects the particle nearest to the click
and shows the volume decoded at its z (LRU cache) beside that particle in the tomogram (when its position is known),
with the view moved to it. In *lasso* / *rectangle* mode a drag selects particles; they are also selected in every
Points layer of the same STAR (and a selection there is highlighted in the scatter). *Save selection* writes the
selection as a filtered STAR. *Decode path* decodes volumes along PC1/PC2 or between the last two clicked particles.
Decoded volumes are iso-surfaces in 3-D (*view*: surface/slice); the *iso level* slider (σ above the volume's mean)
or a *mass* (kDa) sets their level, live (:func:`napari_tomodrgn._view.set_iso`). *Save path movie* writes the last
decoded path as a GIF/MP4 (:func:`tomodrgn.api.render_movie`, at the current iso setting, played forth and back).
Loading, embedding and decoding run in thread workers (:mod:`napari_tomodrgn._async`).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, FloatSpinBox, Label, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath
from matplotlib.widgets import LassoSelector, RectangleSelector

from napari_tomodrgn._async import compact, field_path, init_async, report_error, run_in_thread
from napari_tomodrgn._run import LoadedRun, load_run
from napari_tomodrgn._view import beside_scene, iso_setting, set_iso, setup_viewer, show_volume

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN particle volume"
PATH_LAYER = "tomoDRGN latent path volumes"
PATHS = ("PC1", "PC2", "between 2 picked")
VIEWS = {"surface (3-D)": 3, "slice (2-D)": 2}


def embed_latent(z: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """2-D coordinates (n, 2) of z: ``pca`` (PC1, PC2) or ``umap`` (core :mod:`tomodrgn.analysis.latent`)."""
    from tomodrgn.api import pca, umap_embed

    if method == "umap":
        return umap_embed(z, seed=seed)
    coords = pca(z, 2).coords
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _load_and_embed(run_dir: Path, epoch: int | None, method: str, k: int) -> tuple[LoadedRun, np.ndarray, np.ndarray]:
    """Worker body: load the run, embed z, k-means it (raises InputError for a homogeneous run)."""
    from tomodrgn.api import InputError, kmeans

    run = load_run(run_dir, epoch)
    if run.z is None:
        raise InputError(f"{run_dir}: homogeneous model (no latent space to browse)")
    return run, embed_latent(run.z, method), kmeans(run.z, min(k, len(run.z)))[0]


def _view_name(ndisplay: int) -> str:
    return next(name for name, nd in VIEWS.items() if nd == ndisplay)


class LatentWidget(Container):
    """Dock widget: scatter of the latent space of a trained run, with click-to-decode and selections."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        setup_viewer(napari_viewer)
        init_async(self)
        from tomodrgn.api import COLOR_QUANTITIES, DEFAULT_SIGMA

        self.run_dir = FileEdit(label="run folder", mode="d")
        self.epoch = SpinBox(label="epoch (-1: latest)", min=-1, max=100000, value=-1)
        self.method = ComboBox(label="embedding", choices=["pca", "umap"], value="pca")
        self.k = SpinBox(label="k-means clusters", min=1, max=1000, value=8)
        self.load_btn = PushButton(text="Load")
        self.color_by = ComboBox(label="colour by", choices=list(COLOR_QUANTITIES), value="cluster")
        self.tool = ComboBox(label="selection tool", choices=["click", "lasso", "rectangle"], value="click")
        self.path = ComboBox(label="volumes along", choices=list(PATHS), value="PC1")
        self.n_path = SpinBox(label="path volumes", min=2, max=20, value=5)
        self.path_btn = PushButton(text="Decode path")
        self.movie_file = FileEdit(label="path movie (.gif/.mp4)", mode="w", filter="*.gif *.mp4")
        self.movie_btn = PushButton(text="Save path movie")
        self.out_star = FileEdit(label="selection STAR", mode="w", filter="*.star")
        self.save_btn = PushButton(text="Save selection")
        self.status = Label(label="status", value="load a run folder")
        self.view = ComboBox(label="view", choices=list(VIEWS), value=_view_name(napari_viewer.dims.ndisplay))
        sigma = iso_setting(napari_viewer).get("sigma", DEFAULT_SIGMA)
        self.iso_sigma = FloatSlider(label="iso level (σ)", min=0.0, max=6.0, step=0.1, value=sigma)
        self.mass = FloatSpinBox(label="mass (kDa, 0: use σ)", min=0.0, max=1e6, step=10.0, value=0.0)
        self.extend([self.run_dir, self.epoch, self.method, self.k, self.load_btn, self.busy, self.status])
        self.extend([self.color_by, self.tool])
        self.figure = Figure(figsize=(4, 3.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.toolbar = NavigationToolbar2QT(self.canvas, self.native)
        self.ax = self.figure.add_subplot(111)
        self.native.layout().addWidget(self.toolbar)
        self.native.layout().addWidget(self.canvas)
        self.extend([self.path, self.n_path, self.path_btn, self.view, self.iso_sigma, self.mass])
        self.extend([self.movie_file, self.movie_btn])
        self.extend([self.out_star, self.save_btn])
        compact(self)
        self.run: LoadedRun | None = None
        self.coords: np.ndarray | None = None
        self.cluster_labels: np.ndarray | None = None
        self.selected: np.ndarray = np.empty(0, dtype=np.int64)
        self.current: int | None = None
        self.picked: list[int] = []
        self.path_volumes: np.ndarray | None = None  # the last decoded path (n, D, D, D), for its movie
        self.embedding = "pca"
        self._selector: Any = None
        self._scatter = self._highlight = self._marker = self._cbar = None
        self._linking = False
        self._linked: weakref.WeakSet = weakref.WeakSet()  # Points layers whose selection is connected
        self.canvas.mpl_connect("button_press_event", self._on_press)
        self.load_btn.changed.connect(lambda: self.load())
        self.method.changed.connect(lambda: self.reembed())
        self.color_by.changed.connect(lambda: self._draw() if self.coords is not None else None)
        self.tool.changed.connect(self._set_tool)
        self.path_btn.changed.connect(lambda: self.decode_path())
        self.save_btn.changed.connect(lambda: self.save_selection())
        self.movie_btn.changed.connect(lambda: self.save_path_movie())
        self.viewer.layers.events.inserted.connect(lambda e: self._link_layers())
        self.view.changed.connect(lambda v: setattr(self.viewer.dims, "ndisplay", VIEWS[v]))
        self.viewer.dims.events.ndisplay.connect(lambda e: setattr(self.view, "value", _view_name(e.value)))
        self.iso_sigma.changed.connect(self._on_sigma)
        self.mass.changed.connect(lambda v: self.set_iso_level(mass_kda=v))

    # ------------------------------------------------------------------------------------------------ loading
    def load(self, run_dir: str | Path | None = None, epoch: int | None = None, method: str | None = None,
             k: int | None = None):  # fmt: skip
        """Load a run, embed z (PCA/UMAP) and cluster it (k-means) in a worker; returns the worker (None: bad input)."""
        try:
            run_dir = Path(run_dir) if run_dir is not None else field_path(self.run_dir, "a run folder")
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            self._clear()
            report_error(self, e)
            return None
        epoch = epoch if epoch is not None else (None if self.epoch.value < 0 else int(self.epoch.value))
        method = method or self.method.value
        k = int(k if k is not None else self.k.value)
        self._clear()
        worker = run_in_thread(self, _load_and_embed, run_dir, epoch, method, k, done=self._loaded,
                               what=f"loading {run_dir.name} and embedding z ({method})…")  # fmt: skip
        worker.errored.connect(lambda e: self._clear(keep_status=True))
        return worker

    def _loaded(self, result: tuple[LoadedRun, np.ndarray, np.ndarray]) -> None:
        run, coords, labels = result
        self.run, self.coords, self.cluster_labels = run, coords, labels
        self.embedding = self.method.value if self.method.value in ("pca", "umap") else "pca"
        self._draw()
        self._link_layers()
        self.status.value = f"{len(run.z)} particles, z dim {run.z.shape[1]}, epoch {run.model.epoch}"

    def reembed(self):
        """Recompute the 2-D embedding with the chosen method (UMAP is slow: in a worker)."""
        if self.run is None:
            return None
        method = self.method.value

        def done(coords: np.ndarray) -> None:
            self.coords, self.embedding = coords, method
            self._draw()
            self.status.value = f"{method.upper()} of {len(coords)} particles"

        return run_in_thread(self, embed_latent, self.run.z, method, done=done, what=f"embedding z ({method})…")

    def _clear(self, keep_status: bool = False) -> None:
        """Forget the loaded run and empty the scatter (a failed load must not leave the previous run's plot)."""
        self.run = self.coords = self.cluster_labels = None
        self.selected = np.empty(0, dtype=np.int64)
        self.current, self.picked, self.path_volumes = None, [], None
        self._remove_colorbar()
        self.ax.clear()
        self.ax.set_title("no run loaded", fontsize=9)
        self.canvas.draw_idle()
        if not keep_status:
            self.status.value = "load a run folder"

    # ------------------------------------------------------------------------------------------------ drawing
    def _remove_colorbar(self) -> None:
        if self._cbar is not None:
            self._cbar.remove()
            self._cbar = None

    def _draw(self) -> None:
        from tomodrgn.api import cluster_colors, particle_quantity

        self._remove_colorbar()
        self.ax.clear()
        quantity = self.color_by.value
        try:
            values, cats = particle_quantity(self.run.series, quantity, z=self.run.z, labels=self.cluster_labels)
        except Exception as e:  # noqa: BLE001 - e.g. no tomogram names: say so, colour by cluster
            report_error(self, e)
            values, cats, quantity = self.cluster_labels, [f"cluster {k}" for k in range(20)], "cluster"
        x, y = self.coords[:, 0], self.coords[:, 1]
        if cats is not None:
            colors = cluster_colors(values)
            self._scatter = self.ax.scatter(x, y, s=12, c=colors, edgecolors="none")
            present = np.unique(values)
            handles = [
                self.ax.scatter([], [], s=20, color=cluster_colors(np.array([v]))[0], label=cats[v])
                for v in present[:20]
            ]
            self.ax.legend(handles=handles, fontsize=6, loc="best", ncols=2 if len(handles) > 8 else 1,
                           framealpha=0.6, title=quantity, title_fontsize=7)  # fmt: skip
        else:
            self._scatter = self.ax.scatter(x, y, s=12, c=values, cmap="viridis", edgecolors="none")
            self._cbar = self.figure.colorbar(self._scatter, ax=self.ax, label=quantity)
        self._highlight = self.ax.scatter([], [], s=40, facecolors="none", edgecolors="k", linewidths=1.0)
        (self._marker,) = self.ax.plot([], [], "r+", ms=14, mew=2)
        names = ("PC1", "PC2") if self.embedding == "pca" else ("UMAP1", "UMAP2")
        self.ax.set_xlabel(names[0])
        self.ax.set_ylabel(names[1])
        self._update_highlight()
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
        if self.toolbar.mode:  # zoom / pan active
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

    def show_particle(self, i: int):
        """Decode (worker; or fetch from the cache) particle ``i``'s volume and show it beside the particle."""
        self.current = i
        self.picked = [*self.picked, i][-2:]
        self._marker.set_data([self.coords[i, 0]], [self.coords[i, 1]])
        self.canvas.draw_idle()
        run = self.run
        name = run.series.particle_names[i]
        cluster = int(self.cluster_labels[i])

        def done(vol: np.ndarray) -> None:
            if self.current != i or self.run is not run:
                return  # a newer click won
            extent = vol.shape[0] * run.pixel_size
            pos = self._particle_position(i)
            center = beside_scene(self.viewer, extent, exclude=VOLUME_LAYER) if pos is None else None
            if pos is not None:
                from tomodrgn.api import volume_beside

                center = volume_beside(pos, extent)
            meta = {"particle": i, "particle_name": name, "cluster": cluster}
            show_volume(self.viewer, VOLUME_LAYER, vol, run.pixel_size, center, meta)
            self.status.value = f"particle {i} ({name}), cluster {cluster}"

        return run_in_thread(self, run.volume, i, done=done, what=f"decoding particle {i} ({name})…")

    def _particle_position(self, i: int) -> np.ndarray | None:
        """World position (Å, z y x) of particle ``i``: its point in a linked Points layer, else the STAR's."""
        for layer in self._linked_points():
            rows = np.flatnonzero(np.asarray(layer.features["particle"]) == i)
            if len(rows):
                return np.asarray(layer.data_to_world(layer.data[rows[0]]), dtype=float)[-3:]
        pos = getattr(self.run.series, "position", None)
        return None if pos is None else np.asarray(pos[i], dtype=float)[::-1]

    def select_in_polygon(self, vertices) -> np.ndarray:
        """Select the particles inside a polygon (embedding coordinates); returns their sorted indices."""
        inside = MplPath(np.asarray(vertices, dtype=float)).contains_points(self.coords)
        self.set_selection(np.flatnonzero(inside))
        return self.selected

    def set_selection(self, particles: np.ndarray, link: bool = True) -> None:
        """Select ``particles``: highlight them in the scatter and (``link``) in the linked Points layers."""
        from tomodrgn.api import points_of_particles

        self.selected = np.unique(np.asarray(particles, dtype=np.int64))
        self._update_highlight()
        self.canvas.draw_idle()
        self.status.value = f"{len(self.selected)} particles selected"
        if link and not self._linking:
            self._linking = True
            try:
                for layer in self._linked_points():
                    layer.selected_data = set(points_of_particles(layer.features["particle"], self.selected).tolist())
                    layer.refresh()
            finally:
                self._linking = False

    def _update_highlight(self) -> None:
        if self._highlight is not None and self.coords is not None:
            self._highlight.set_offsets(self.coords[self.selected] if len(self.selected) else np.empty((0, 2)))

    # ------------------------------------------------------------------------------------------------ linking
    def _linked_points(self) -> list:
        """Points layers showing particles of the loaded run's STAR (feature ``particle``, same ``star_path``)."""
        from napari.layers import Points

        if self.run is None:
            return []
        star = str(self.run.series.star_path)
        return [
            layer for layer in self.viewer.layers
            if isinstance(layer, Points) and "particle" in layer.features and layer.metadata.get("star_path") == star
        ]  # fmt: skip

    def _link_layers(self) -> None:
        for layer in self._linked_points():
            if layer not in self._linked:
                self._linked.add(layer)
                layer.selected_data.events.items_changed.connect(lambda *_, lay=layer: self._on_points_selected(lay))

    def _on_points_selected(self, layer) -> None:
        from tomodrgn.api import particles_of_points

        if self._linking or self.run is None:
            return
        self._linking = True
        try:
            self.set_selection(particles_of_points(layer.features["particle"], layer.selected_data), link=False)
        finally:
            self._linking = False

    # ------------------------------------------------------------------------------------------------ 3-D view
    def set_iso_level(self, sigma: float | None = None, mass_kda: float | None = None) -> None:
        """Iso level of every decoded volume: ``mass_kda`` > 0 encloses that mass, else mean + ``sigma``·std."""
        from tomodrgn.api import InputError

        mass_kda = float(self.mass.value if mass_kda is None else mass_kda)
        sigma = float(self.iso_sigma.value if sigma is None else sigma)
        try:
            set_iso(self.viewer, sigma=sigma, mass_kda=mass_kda)
        except InputError as e:
            report_error(self, e, "iso level")
            return
        self.status.value = f"iso level: {mass_kda:g} kDa enclosed" if mass_kda else f"iso level: mean + {sigma:g} σ"

    def _on_sigma(self, sigma: float) -> None:
        if self.mass.value:  # moving the σ slider leaves mass mode (its change applies the σ level)
            self.mass.value = 0.0
        else:
            self.set_iso_level(sigma=sigma)

    # ------------------------------------------------------------------------------------------------ paths
    def decode_path(self, path: str | None = None, n: int | None = None):
        """Decode ``n`` volumes along PC1/PC2 or between the last two clicked particles; shown as a row."""
        from tomodrgn.api import latent_pc_traversal, path_between

        path, n = path or self.path.value, int(n or self.n_path.value)
        if self.run is None:
            return report_error(self, "load a run folder first")
        if path == "between 2 picked":
            if len(self.picked) < 2:
                return report_error(self, "click two particles in the scatter first")
            z = path_between(self.run.z[self.picked[0]], self.run.z[self.picked[1]], n)
        else:
            if int(path[-1]) > self.run.z.shape[1]:
                return report_error(self, f"{path} does not exist (z has {self.run.z.shape[1]} dimensions)")
            z = latent_pc_traversal(self.run.z, int(path[-1]), n)[0]
        run = self.run

        def done(vols: np.ndarray) -> None:
            d = vols.shape[-1]
            gap = max(d // 4, 1)
            row = np.zeros((d, d, n * d + (n - 1) * gap), dtype=np.float32)
            for k, v in enumerate(vols):
                row[:, :, k * (d + gap) : k * (d + gap) + d] = v
            extent = row.shape[-1] * run.pixel_size
            center = beside_scene(self.viewer, extent, exclude=PATH_LAYER)
            meta = {"path": path, "n": n}
            show_volume(self.viewer, PATH_LAYER, row, run.pixel_size, center, meta, context=1.2, level_volumes=vols)
            self.path_volumes = vols
            self.status.value = f"{n} volumes along {path} (left to right)"

        return run_in_thread(self, run.decode, z.astype(np.float32), done=done, what=f"decoding {n} volumes…")

    def save_path_movie(self, out: str | Path | None = None):
        """Write the last decoded path as a GIF/MP4 (core renderer, in a worker: one frame per volume, forth and back,
        at the current iso setting); returns the worker, or None (the reason in the status line)."""
        from tomodrgn.api import DEFAULT_SIGMA, InputError, render_movie

        try:
            if self.path_volumes is None:
                raise InputError("decode a path first (Decode path)")
            out = Path(out) if out is not None else field_path(self.movie_file, "a movie file (.gif or .mp4)")
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e, "path movie")
            return None
        vols, pixel_size, iso = self.path_volumes, self.run.pixel_size, iso_setting(self.viewer)

        def done(movie) -> None:
            self.status.value = f"wrote {movie.path} ({movie.n_frames} frames)"

        return run_in_thread(
            self, render_movie, vols, out, pixel_size, sigma=iso.get("sigma", DEFAULT_SIGMA),
            mass_kda=iso.get("mass_kda"), bounce=True, overwrite=True, done=done, what=f"rendering {out.name}…",
        )  # fmt: skip

    def save_selection(self, out_star: str | Path | None = None) -> Path | None:
        """Write the selected particles as a filtered STAR (same flavour, every column kept)."""
        from tomodrgn.api import InputError, filter_star

        try:
            if self.run is None or len(self.selected) == 0:
                raise InputError("nothing selected: draw a lasso or rectangle in the scatter first")
            out = Path(out_star) if out_star is not None else field_path(self.out_star, "a selection STAR file")
            if out.is_dir():
                raise InputError(f"{out} is a folder: give a file name ending in .star")
            out = filter_star(self.run.series, out, indices=self.selected)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e, "save selection")
            return None
        self.status.value = f"wrote {len(self.selected)} particles to {out}"
        return out
