"""What each analysis command writes into its output folder, and the one rule for that folder (torch-free).

A folder that holds anything is refused unless ``--overwrite`` (one line naming the folder and ``--overwrite``,
before any work), for the default folders inside a run (``RUN/analyze.N``, ``RUN/pc_traversal.N``,
``RUN/convergence`` …) as for a given ``-o``. ``--overwrite`` removes the entries the command writes (the patterns
below) just before it writes, so no file of an earlier call is left beside the new ones; other files are kept
(:mod:`tomodrgn.io.output_dir`, as :mod:`tomodrgn.runs.create` does for a training run).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tomodrgn.io.output_dir import CommandOutputs, check_output_dir, prepare_output_dir

ANALYZE = CommandOutputs(
    "analyze",
    re.compile(
        r"z_(pca|pca_variance|umap)\.(png|npy)|loss\.png|kmeans\d+|pc\d+|spatial|chimerax|report\.md"
        r"|pose_corrections\.png|pose_tails\.txt"
    ),
)
ANALYZE_VOLUMES = CommandOutputs(
    "analyze_volumes",
    re.compile(
        r"volumes|mask\.mrc|vol_pca(_variance)?\.png|vol_pca_coords\.npy|labels_volumes\.npy|kmeans\d+|pc\d+"
        r"|report\.md"
    ),
)
PC_TRAVERSAL = CommandOutputs("pc_traversal", re.compile(r"pc\d+"))
GRAPH_TRAVERSAL = CommandOutputs(
    "graph_traversal", re.compile(r"vol_\d+\.mrc|z_values\.txt|path\.png|path_particles\.txt")
)
CONVERGENCE_VAE = CommandOutputs(
    "convergence_vae",
    re.compile(
        r"convergence\.csv|(latent|volume)_stability\.png|ground_truth_cc\.csv|loss\.png|verdict\.txt|report\.md"
    ),
)
CONVERGENCE_NN = CommandOutputs(
    "convergence_nn",
    re.compile(r"convergence_nn\.csv|fsc_(epochs|reference)\.png|map\.\d+\.mrc|verdict\.txt|report\.md"),
)


@dataclass(frozen=True)
class OutputFolder:
    """An analysis command's output folder, checked (:func:`output_folder`); :meth:`prepare` before writing."""

    path: Path
    what: str
    outputs: CommandOutputs
    overwrite: bool
    inputs: tuple[Path, ...] = field(default=())

    def prepare(self) -> Path:
        """Make the folder; with ``overwrite``, remove what the command wrote there before."""
        return prepare_output_dir(self.path, self.overwrite, self.what, self.outputs, self.inputs)


def output_folder(
    path: str | Path,
    given: bool,
    outputs: CommandOutputs,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
) -> OutputFolder:
    """Check ``path`` (``given``: the user's ``-o``, else the command's default folder) before any work:
    :class:`~tomodrgn.io.errors.InputError` when it is used and not ``overwrite``, or when ``overwrite`` would remove
    one of ``inputs``. Writes nothing."""
    what = "-o" if given else "output folder"
    inputs = tuple(Path(p) for p in inputs)
    check_output_dir(path, overwrite, what, outputs, inputs)
    return OutputFolder(Path(path), what, outputs, overwrite, inputs)
