"""Training dock widget: pick a STAR file and options, train in a background thread, watch loss and volume.

Training runs :func:`tomodrgn.api.iter_train` inside a napari ``thread_worker`` (generator worker): each step
updates the progress bar, the loss label and the loss plot (matplotlib canvas, redrawn at most 5× a second); after
each epoch the checkpoint is decoded in the worker (at the mean latent of the epoch for a VAE) and the volume replaces
the data of the ``tomoDRGN training volume`` Image layer, shown beside the other layers with the view moved to it.
*Stop* sets the stop event: the core finishes the current step, writes a checkpoint and returns. The STAR field is
pre-filled from an opened layer that carries ``metadata['star_path']`` (the sample data); a non-empty output folder
is only overwritten after the user says so (unless *resume* is ticked).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from napari_tomodrgn._async import compact, field_path, report_error, start_worker
from napari_tomodrgn._torch_setup import prepare_torch
from napari_tomodrgn._view import beside_scene, setup_viewer, show_volume

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN training volume"


def decode_checkpoint(run_dir: Path, epoch: int) -> tuple[np.ndarray, float]:
    """Volume (D, D, D) of checkpoint ``epoch`` in ``run_dir`` and its voxel size (Å).

    Homogeneous: the single volume; VAE: the volume at the mean of the epoch's latent means ``z.{epoch}.npy``
    (the origin of z-space if that file is absent).
    """
    from tomodrgn.api import RunFolder, load_model

    model = load_model(run_dir, epoch)
    if model.zdim == 0:
        vol = model.decode(None)[0]
    else:
        zfile = RunFolder(run_dir).z(epoch)
        z = np.load(zfile).mean(axis=0, keepdims=True) if zfile.is_file() else np.zeros((1, model.zdim), np.float32)
        vol = model.decode(z)[0]
    return vol, model.pixel_size


def train_events(
    star: Path,
    outdir: Path,
    config: Any,
    stop_event: threading.Event,
    resume: bool = False,
    threads: list | None = None,
    overwrite: bool = False,
):
    """Generator run by the worker: yields ("step", StepEvent), ("epoch", EpochEvent), ("volume", (vol, Å, epoch))
    and ("warning", line) for each warning training raises (one line, each kind once: ``tomodrgn.api.warnings_to``).

    The id of the thread it runs in is appended to ``threads`` (tests check training ran off the main thread).
    """
    from tomodrgn.api import EpochEvent, iter_train, warnings_to

    if threads is not None:
        threads.append(threading.get_ident())
    pending: list[str] = []
    with warnings_to(pending.append):
        for ev in iter_train(star, outdir, config, stop_event=stop_event, resume=resume, overwrite=overwrite):
            while pending:
                yield "warning", pending.pop(0)
            if isinstance(ev, EpochEvent):
                yield "epoch", ev
                if ev.checkpoint is not None:
                    vol, ps = decode_checkpoint(outdir, ev.epoch)
                    yield "volume", (vol, ps, ev.epoch)
            else:
                yield "step", ev
    while pending:  # the last ones, and the count of repeats left out
        yield "warning", pending.pop(0)


class TrainWidget(Container):
    """Dock widget to train tomoDRGN (homogeneous or VAE) on a particle STAR file, with live progress."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        setup_viewer(napari_viewer)
        self.star = FileEdit(label="particles STAR", mode="r", filter="*.star")
        self.outdir = FileEdit(label="output folder", mode="d")
        self.resume = CheckBox(text="resume from the last checkpoint in the output folder", value=False)
        self.mode = ComboBox(label="mode", choices=["vae", "homogeneous"], value="vae")
        self.zdim = SpinBox(label="latent dim", min=1, max=256, value=8)
        from tomodrgn.api import ENCODERS, TrainConfig

        self.encoder = ComboBox(label="encoder", choices=list(ENCODERS), value=TrainConfig.encoder)
        self.enc_arch = LineEdit(label="encoder (nodes x layers)", value="256x3")
        self.dec_arch = LineEdit(label="decoder (nodes x layers)", value="256x3")
        self.epochs = SpinBox(label="epochs", min=1, max=10000, value=20)
        self.batch_size = SpinBox(label="batch (particles)", min=1, max=4096, value=8)
        self.n_tilts = SpinBox(label="tilts per particle (0: min)", min=0, max=1000, value=0)
        self.lr = FloatSpinBox(label="learning rate", min=1e-7, max=1.0, step=1e-5, value=TrainConfig.lr)
        self.lr.native.setDecimals(6)
        self.beta = FloatSpinBox(label="β (KL weight, 0: 1/zdim)", min=0.0, max=100.0, step=0.01, value=0.0)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda"], value="auto")
        self.start_btn = PushButton(text="Train")
        self.stop_btn = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="idle")
        self.extend(
            [
                self.star,
                self.outdir,
                self.resume,
                self.mode,
                self.zdim,
                self.encoder,
                self.enc_arch,
                self.dec_arch,
                self.epochs,
                self.batch_size,
                self.n_tilts,
                self.lr,
                self.beta,
                self.device,
                self.start_btn,
                self.stop_btn,
                self.progress,
                self.status,
            ]
        )
        self.figure = Figure(figsize=(4, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.ax = self.figure.add_subplot(111)
        self.native.layout().addWidget(self.canvas)
        self._last_plot = 0.0
        self.worker_threads: list[int] = []
        self.confirm_box: Any = None
        compact(self)
        self._prefill_star()
        self.viewer.layers.events.inserted.connect(lambda e: self._prefill_star())
        self.start_btn.changed.connect(self.start)
        self.stop_btn.changed.connect(self.stop)
        self.mode.changed.connect(self._mode_changed)
        self.worker = None
        self.stop_event = threading.Event()
        self.losses: list[float] = []
        self.warnings: list[str] = []
        self.epochs_done: list[int] = []
        self._epochs_total = int(self.epochs.value)

    def _mode_changed(self, mode: str) -> None:
        for w in (self.zdim, self.encoder, self.enc_arch, self.beta):
            w.enabled = mode == "vae"

    def _prefill_star(self) -> None:
        """Fill an empty STAR field from the newest layer with ``metadata['star_path']`` (e.g. the sample data)."""
        if str(self.star.line_edit.value).strip():
            return
        for layer in reversed(list(self.viewer.layers)):
            star = layer.metadata.get("star_path")
            if star and Path(star).is_file():
                self.star.value = star
                return

    def _confirm_overwrite(self, outdir: Path) -> bool:
        """Ask (QMessageBox, kept in ``confirm_box`` so a test can answer) before training into a non-empty folder."""
        from qtpy.QtWidgets import QMessageBox

        box = QMessageBox(self.native)
        box.setIcon(QMessageBox.Warning)
        box.setWindowTitle("tomoDRGN: output folder not empty")
        box.setText(f"{outdir} already holds files. Train into it and overwrite its checkpoints?")
        box.setStandardButtons(QMessageBox.Yes | QMessageBox.No)
        box.setDefaultButton(QMessageBox.No)
        self.confirm_box = box
        try:
            return box.exec_() == QMessageBox.Yes
        finally:
            self.confirm_box = None

    def config(self) -> Any:
        """The :class:`tomodrgn.runs.config.TrainConfig` of the current settings (checkpoint every epoch)."""
        from tomodrgn.api import TrainConfig

        return TrainConfig(
            mode=self.mode.value,
            zdim=int(self.zdim.value),
            encoder=self.encoder.value,
            enc_arch_a=self.enc_arch.value,
            enc_arch_b=self.enc_arch.value,
            dec_arch=self.dec_arch.value,
            epochs=int(self.epochs.value),
            batch_size=int(self.batch_size.value),
            n_tilts=int(self.n_tilts.value) or None,
            lr=float(self.lr.value),
            beta=float(self.beta.value) or None,
            device=self.device.value,
            checkpoint_every=1,
        )

    def start(self, config: Any = None) -> Any:
        """Start training in a thread worker (``config`` overrides the form); returns the worker."""
        from napari.qt.threading import thread_worker

        note = prepare_torch()
        if self.worker is not None:
            self.status.value = "already training"
            return self.worker
        try:
            star = field_path(self.star, "a particles STAR file")
            outdir = field_path(self.outdir, "an output folder")
            if not star.is_file():
                raise FileNotFoundError(2, "No such file", str(star))
            cfg = config if config is not None and not isinstance(config, bool) else self.config()
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            report_error(self, e, "cannot start training")
            return None
        resume = bool(self.resume.value)
        overwrite = not resume and outdir.is_dir() and any(outdir.iterdir())
        if overwrite and not self._confirm_overwrite(outdir):
            self.status.value = f"not started: {outdir} is not empty (tick resume, or choose another folder)"
            return None
        self.stop_event = threading.Event()
        self.losses, self.epochs_done = [], []
        self.warnings = []
        self._epochs_total = int(cfg.epochs)
        self.progress.value = 0
        self.status.value = "starting…" if note is None else f"starting… ({note})"
        self.ax.clear()
        self.canvas.draw_idle()
        worker = thread_worker(train_events, start_thread=False, ignore_errors=True)(
            star, outdir, cfg, self.stop_event, resume, self.worker_threads, overwrite
        )
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.start_btn.enabled, self.stop_btn.enabled = False, True
        start_worker(worker)
        return worker

    def stop(self) -> None:
        """Ask the core to stop after the current step (it writes a checkpoint)."""
        self.stop_event.set()
        self.status.value = "stopping…"

    def _on_event(self, item: tuple[str, Any]) -> None:
        kind, ev = item
        if kind == "warning":
            from napari.utils.notifications import show_warning

            self.warnings.append(ev)
            self.status.value = f"{self.status.value} · {ev}"
            show_warning(ev)
        elif kind == "step":
            total = ev.steps_per_epoch * self._epochs_total
            self.progress.max = max(total, 1)
            self.progress.value = min(ev.global_step, self.progress.max)
            self.losses.append(float(ev.loss))
            self.status.value = (
                f"epoch {ev.epoch} step {ev.step}/{ev.steps_per_epoch} loss {ev.loss:.4g}{self._warned()}"
            )
            if time.perf_counter() - self._last_plot > 0.2:
                self._plot_losses()
        elif kind == "epoch":
            self.epochs_done.append(ev.epoch)
            held = f", held-out {ev.val_loss:.4g}" if getattr(ev, "val_loss", None) is not None else ""
            self.status.value = f"epoch {ev.epoch} done: loss {ev.loss:.4g}{held} ({ev.seconds:.1f} s){self._warned()}"
        elif kind == "volume":
            vol, ps, epoch = ev
            extent = vol.shape[0] * ps
            if VOLUME_LAYER in self.viewer.layers:  # keep its place; follow it with the view
                layer = self.viewer.layers[VOLUME_LAYER]
                center = np.asarray(layer.translate, dtype=float) + ps * (np.asarray(vol.shape) // 2)
            else:
                center = beside_scene(self.viewer, extent, exclude=VOLUME_LAYER)
            show_volume(self.viewer, VOLUME_LAYER, vol, ps, center, {"epoch": epoch})

    def _warned(self) -> str:
        """The latest warning of this run, kept on the status line after the progress text."""
        return f" · {self.warnings[-1]}" if self.warnings else ""

    def _plot_losses(self) -> None:
        self._last_plot = time.perf_counter()
        self.ax.clear()
        self.ax.plot(np.arange(1, len(self.losses) + 1), self.losses, lw=1)
        self.ax.set_xlabel("step")
        self.ax.set_ylabel("loss")
        self.canvas.draw_idle()

    def _on_error(self, exc: Exception) -> None:
        report_error(self, exc, "training failed")

    def _on_finished(self) -> None:
        self.worker = None
        self._plot_losses()
        self.start_btn.enabled, self.stop_btn.enabled = True, False
        if not self.status.value.startswith("error"):
            self.status.value = ("stopped: " if self.stop_event.is_set() else "finished: ") + self.status.value
