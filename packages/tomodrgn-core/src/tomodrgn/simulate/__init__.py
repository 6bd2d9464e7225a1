"""Ground-truth simulation: procedural phantoms, the tilt-series forward model, datasets and small tomograms.

Uses only :mod:`tomodrgn.physics` and :mod:`tomodrgn.io`.
"""

from tomodrgn.simulate.dataset import SimulatedDataset, simulate_dataset
from tomodrgn.simulate.presets import PRESETS
from tomodrgn.simulate.relion5 import write_relion5
from tomodrgn.simulate.tomogram import simulate_tomogram

__all__ = ["PRESETS", "SimulatedDataset", "simulate_dataset", "simulate_tomogram", "write_relion5"]
