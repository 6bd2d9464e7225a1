"""Datasets of particle tilt-series for training (tilt sampling, Hartley transform, normalisation)."""

from tomodrgn.data.dataset import TiltSeriesDataset, collate

__all__ = ["TiltSeriesDataset", "collate"]
