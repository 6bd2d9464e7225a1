"""Training dock widget: pick a STAR file and options, train in a background thread, watch loss and volume.

Training runs :func:`tomodrgn.training.loop.iter_train` inside a napari ``thread_worker`` (generator worker): each
step updates the progress bar and the loss label; after each epoch the checkpoint is decoded
(:func:`tomodrgn.training.evaluate.load_model`, at the mean latent of the epoch for a VAE) and the volume replaces
the data of the ``tomoDRGN training volume`` Image layer. *Stop* sets the stop event: the core finishes the current
step, writes a checkpoint and returns.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton, SpinBox

from napari_tomodrgn._torch_setup import prepare_torch

if TYPE_CHECKING:
    import napari

VOLUME_LAYER = "tomoDRGN training volume"


def decode_checkpoint(run_dir: Path, epoch: int) -> tuple[np.ndarray, float]:
    """Volume (D, D, D) of checkpoint ``epoch`` in ``run_dir`` and its voxel size (Å).

    Homogeneous: the single volume; VAE: the volume at the mean of the epoch's latent means ``z.{epoch}.npy``
    (the origin of z-space if that file is absent).
    """
    from tomodrgn.api import load_model

    model = load_model(run_dir, epoch)
    if model.zdim == 0:
        vol = model.decode(None)[0]
    else:
        zfile = Path(run_dir) / f"z.{epoch}.npy"
        z = np.load(zfile).mean(axis=0, keepdims=True) if zfile.is_file() else np.zeros((1, model.zdim), np.float32)
        vol = model.decode(z)[0]
    return vol, model.pixel_size


def train_events(star: Path, outdir: Path, config: Any, stop_event: threading.Event):
    """Generator run by the worker: yields ("step", StepEvent), ("epoch", EpochEvent), ("volume", (vol, Å, epoch))."""
    from tomodrgn.api import EpochEvent, iter_train

    for ev in iter_train(star, outdir, config, stop_event=stop_event):
        if isinstance(ev, EpochEvent):
            yield "epoch", ev
            if ev.checkpoint is not None:
                vol, ps = decode_checkpoint(outdir, ev.epoch)
                yield "volume", (vol, ps, ev.epoch)
        else:
            yield "step", ev


class TrainWidget(Container):
    """Dock widget to train tomoDRGN (homogeneous or VAE) on a particle STAR file, with live progress."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.star = FileEdit(label="particles STAR", mode="r", filter="*.star")
        self.outdir = FileEdit(label="output folder", mode="d")
        self.mode = ComboBox(label="mode", choices=["vae", "homogeneous"], value="vae")
        self.zdim = SpinBox(label="latent dim", min=1, max=256, value=8)
        from tomodrgn.api import ENCODERS, TrainConfig

        self.encoder = ComboBox(label="encoder", choices=list(ENCODERS), value=TrainConfig.encoder)
        self.enc_arch = LineEdit(label="encoder (nodes x layers)", value="256x3")
        self.dec_arch = LineEdit(label="decoder (nodes x layers)", value="256x3")
        self.epochs = SpinBox(label="epochs", min=1, max=10000, value=20)
        self.batch_size = SpinBox(label="batch (particles)", min=1, max=4096, value=8)
        self.n_tilts = SpinBox(label="tilts per particle (0: min)", min=0, max=1000, value=0)
        self.start_btn = PushButton(text="Train")
        self.stop_btn = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="status", value="idle")
        self.extend(
            [
                self.star,
                self.outdir,
                self.mode,
                self.zdim,
                self.encoder,
                self.enc_arch,
                self.dec_arch,
                self.epochs,
                self.batch_size,
                self.n_tilts,
                self.start_btn,
                self.stop_btn,
                self.progress,
                self.status,
            ]
        )
        self.start_btn.changed.connect(self.start)
        self.stop_btn.changed.connect(self.stop)
        self.mode.changed.connect(self._mode_changed)
        self.worker = None
        self.stop_event = threading.Event()
        self.losses: list[float] = []
        self.epochs_done: list[int] = []
        self._epochs_total = int(self.epochs.value)

    def _mode_changed(self, mode: str) -> None:
        for w in (self.zdim, self.encoder, self.enc_arch):
            w.enabled = mode == "vae"

    def config(self) -> Any:
        """The :class:`tomodrgn.training.config.TrainConfig` of the current settings (checkpoint every epoch)."""
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
            checkpoint_every=1,
        )

    def start(self, config: Any = None) -> Any:
        """Start training in a thread worker (``config`` overrides the form); returns the worker."""
        from napari.qt.threading import thread_worker

        note = prepare_torch()
        if self.worker is not None:
            self.status.value = "already training"
            return self.worker
        star, outdir = Path(self.star.value), Path(self.outdir.value)
        if not star.is_file():
            self.status.value = f"no STAR file at {star}"
            return None
        try:
            cfg = config if config is not None and not isinstance(config, bool) else self.config()
        except ValueError as e:
            self.status.value = f"bad option: {e}"
            return None
        self.stop_event = threading.Event()
        self.losses, self.epochs_done = [], []
        self._epochs_total = int(cfg.epochs)
        self.progress.value = 0
        self.status.value = "starting…" if note is None else f"starting… ({note})"
        worker = thread_worker(train_events, start_thread=False)(star, outdir, cfg, self.stop_event)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.start_btn.enabled, self.stop_btn.enabled = False, True
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the core to stop after the current step (it writes a checkpoint)."""
        self.stop_event.set()
        self.status.value = "stopping…"

    def _on_event(self, item: tuple[str, Any]) -> None:
        kind, ev = item
        if kind == "step":
            total = ev.steps_per_epoch * self._epochs_total
            self.progress.max = max(total, 1)
            self.progress.value = min(ev.global_step, self.progress.max)
            self.losses.append(float(ev.loss))
            self.status.value = f"epoch {ev.epoch} step {ev.step}/{ev.steps_per_epoch} loss {ev.loss:.4g}"
        elif kind == "epoch":
            self.epochs_done.append(ev.epoch)
            held = f", held-out {ev.val_loss:.4g}" if getattr(ev, "val_loss", None) is not None else ""
            self.status.value = f"epoch {ev.epoch} done: loss {ev.loss:.4g}{held} ({ev.seconds:.1f} s)"
        elif kind == "volume":
            vol, ps, epoch = ev
            if VOLUME_LAYER in self.viewer.layers:
                layer = self.viewer.layers[VOLUME_LAYER]
                layer.data = vol
                layer.scale = (ps,) * 3
                layer.contrast_limits = (float(vol.min()), float(vol.max()) + 1e-12)
            else:
                self.viewer.add_image(vol, name=VOLUME_LAYER, scale=(ps,) * 3, rendering="mip")
            self.viewer.layers[VOLUME_LAYER].metadata["epoch"] = epoch

    def _on_error(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"

    def _on_finished(self) -> None:
        self.worker = None
        self.start_btn.enabled, self.stop_btn.enabled = True, False
        if not self.status.value.startswith("error"):
            self.status.value = ("stopped: " if self.stop_event.is_set() else "finished: ") + self.status.value
