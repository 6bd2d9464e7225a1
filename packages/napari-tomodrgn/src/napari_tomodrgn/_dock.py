"""One tabbed dock (Train · Latent browser · Tomogram overlay) that fits a 1280×800 screen.

Each tab is a scroll area, so the dock's minimum height is small whatever the form's length. The latent browser and
the overlay share the loaded run folder: loading a run in the browser fills the overlay's run folder field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QTabWidget

from napari_tomodrgn._widget_latent import LatentWidget
from napari_tomodrgn._widget_overlay import OverlayWidget
from napari_tomodrgn._widget_train import TrainWidget

if TYPE_CHECKING:
    import napari


class TomoDRGNDock(QTabWidget):
    """The three tomoDRGN widgets as tabs; ``train``, ``latent`` and ``overlay`` are the widgets."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.train = TrainWidget(napari_viewer)
        self.latent = LatentWidget(napari_viewer)
        self.overlay = OverlayWidget(napari_viewer)
        for widget, title in ((self.train, "Train"), (self.latent, "Latent"), (self.overlay, "Overlay")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
            scroll.setWidget(widget.native)
            scroll.setMinimumHeight(200)
            self.addTab(scroll, title)
        self.setMinimumWidth(360)
        self.latent.run_dir.changed.connect(self._share_run_dir)

    def _share_run_dir(self, value) -> None:
        if not str(self.overlay.run_dir.line_edit.value).strip():
            self.overlay.run_dir.value = value
