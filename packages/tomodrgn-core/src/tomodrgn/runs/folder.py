"""The layout of a training run folder: the one place its file names are spelled (torch-free).

A run folder holds::

    config.json                     the run's TrainConfig
    train.log                       one line per epoch (and ``#`` comments)
    weights.{e}.pt                  checkpoint after epoch e (0-based) completed
    weights.{e}.step{s}.pt          checkpoint of a run stopped s optimiser steps into epoch e
    weights.pt                      link to (or copy of) the latest checkpoint
    z.{e}.npy, z.{e}.logvar.npy     latent μ and log σ² per particle after epoch e (VAE runs)
    z.npy, z.logvar.npy             links to the latest latents
    z.{e}.train.pkl, z.train.pkl    the same as the published tomoDRGN writes them (a run trained in its spelling)
    heldout.{e}.csv                 held-out tilt errors after epoch e (``--val-tilts``)
    reference_check.txt             ``--reference``: the hand / contrast check of the run's map
    analyze.{e}/                    ``tomodrgn analyze`` of epoch e (``analyze/`` when the epoch is unknown)
    <command>.{e}/                  other analysis commands' default output folders (``pc_traversal.{e}`` …)

Every writer and reader of these files (training, analysis, the API, the CLI, the plugin) goes through
:class:`RunFolder`, so the layout changes in one place; folders written by earlier releases keep loading
(``tests/core/test_legacy_run.py``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONFIG = "config.json"
LOG = "train.log"
WEIGHTS_LINK = "weights.pt"
Z_LINK = "z.npy"
LOGVAR_LINK = "z.logvar.npy"
ANALYSIS = "analyze"
#: how epochs are counted, the same in files, train.log, the screen and every --epoch option (as cryoDRGN's and the
#: published tomoDRGN's files): said in train.log's header and the --epochs / --epoch help
EPOCH_COUNTING = (
    "epochs are counted from 0: epoch E writes weights.E.pt and z.E.npy (analyze.E); --epochs N trains epochs 0…N-1"
)

#: names of the files and folders a training run (and ``tomodrgn analyze`` inside it) writes; ``--overwrite``
#: deletes exactly these
RUN_FILE = re.compile(
    r"^(config\.json|train\.log|weights(\.\d+(\.step\d+)?)?\.pt|poses\.\d+\.npz|"
    r"z(\.\d+)?((\.logvar)?\.npy|\.train\.pkl)|analyze(\.\d+)?)(\.tmp)?$"
)
_CHECKPOINT = re.compile(r"^weights\.(\d+)(?:\.step(\d+))?\.pt$")
_LATENT = re.compile(r"^z\.(\d+)\.npy$")


def checkpoint_name(epoch: int, step_in_epoch: int = 0) -> str:
    """``weights.{epoch}.pt`` (epoch completed), or ``weights.{epoch}.step{s}.pt`` (stopped s steps into it)."""
    return f"weights.{epoch}.pt" if step_in_epoch == 0 else f"weights.{epoch}.step{step_in_epoch}.pt"


@dataclass
class RunFolder:
    """A training run folder (see the module docstring); paths only, nothing is read until asked."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # --- files -----------------------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def weights_link(self) -> Path:
        return self.path / WEIGHTS_LINK

    @property
    def z_link(self) -> Path:
        return self.path / Z_LINK

    @property
    def logvar_link(self) -> Path:
        return self.path / LOGVAR_LINK

    def checkpoint(self, epoch: int, step_in_epoch: int = 0) -> Path:
        return self.path / checkpoint_name(epoch, step_in_epoch)

    def z(self, epoch: int) -> Path:
        """Latent means after ``epoch`` (0-based)."""
        return self.path / f"z.{epoch}.npy"

    def poses(self, epoch: int) -> Path:
        """Pose corrections after ``epoch`` (``--refine-poses``; :mod:`tomodrgn.models.pose_corrections`)."""
        return self.path / f"poses.{epoch}.npz"

    def logvar(self, epoch: int) -> Path:
        """Latent log variances after ``epoch`` (0-based)."""
        return self.path / f"z.{epoch}.logvar.npy"

    def tomodrgn_z(self, epoch: int | None) -> Path:
        """The published tomoDRGN's latents file: ``z.{epoch}.train.pkl`` (``z.train.pkl``: the latest)."""
        return self.path / ("z.train.pkl" if epoch is None else f"z.{epoch}.train.pkl")

    def heldout(self, epoch: int) -> Path:
        return self.path / f"heldout.{epoch}.csv"

    def output(self, name: str, epoch: int | None) -> Path:
        """The default output folder of an analysis command: ``<name>.<epoch>`` (``<name>`` when epoch is None)."""
        return self.path / (name if epoch is None else f"{name}.{epoch}")

    def reference_check(self, epoch: int | None) -> Path:
        """The ``--reference`` report of the run's map: ``reference_check.txt`` (``reference_check.<e>.txt``)."""
        return self.path / ("reference_check.txt" if epoch is None else f"reference_check.{epoch}.txt")

    def analysis(self, epoch: int | None) -> Path:
        """``tomodrgn analyze``'s default folder, ``analyze.<epoch>``."""
        return self.output(ANALYSIS, epoch)

    # --- what is there ---------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A folder a training run wrote: a config and a latest checkpoint."""
        return self.config.is_file() and self.weights_link.exists()

    def run_files(self) -> list[Path]:
        """The entries a training run writes (:data:`RUN_FILE`), sorted by name."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if RUN_FILE.match(p.name))

    def checkpoints(self) -> list[tuple[tuple[int, int], Path]]:
        """Checkpoints, oldest first, keyed by (completed epochs, steps into the next epoch)."""
        out = []
        if not self.path.is_dir():
            return out
        for p in self.path.iterdir():
            m = _CHECKPOINT.match(p.name)
            if m:
                e, s = int(m.group(1)), m.group(2)
                out.append(((e + 1, 0) if s is None else (e, int(s)), p))
        return sorted(out)

    def latent_epochs(self) -> list[int]:
        """Epochs with saved latents ``z.N.npy``, ascending."""
        if not self.path.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := _LATENT.match(p.name)))

    def analysis_folders(self) -> list[Path]:
        """``analyze*`` folders (and older ``analysis*`` ones), sorted by name."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.is_dir() and p.name.startswith(("analyze", "analysis")))

    # --- reading ---------------------------------------------------------------------------------------------
    def load_config(self) -> dict:
        """``config.json`` as a dict ({} when absent)."""
        return json.loads(self.config.read_text()) if self.config.is_file() else {}

    def load_z(self, epoch: int | None = None) -> tuple[np.ndarray, int | None]:
        """(latent means (n, zdim), their epoch): ``z.{epoch}.npy``, or the latest (``z.npy``) when None."""
        if epoch is not None:
            path = self.z(epoch)
            if not path.exists():
                raise FileNotFoundError(f"{path} not found (epochs with latents: {self.latent_epochs()})")
            return np.load(path), epoch
        epochs = self.latent_epochs()
        if self.z_link.exists():
            return np.load(self.z_link), (epochs[-1] if epochs else None)
        if epochs:
            return np.load(self.z(epochs[-1])), epochs[-1]
        raise FileNotFoundError(f"no z.npy or z.N.npy in {self.path}: is it a tomodrgn training run (vae mode)?")

    def load_z_of_checkpoint(self, epoch: int) -> np.ndarray | None:
        """``z.{epoch}.npy``, else ``z.npy``, else None (a homogeneous run, or latents not written)."""
        for path in (self.z(epoch), self.z_link):
            if path.is_file():
                return np.load(path)
        return None
