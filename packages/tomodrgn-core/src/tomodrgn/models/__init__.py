"""Neural networks: MLPs, the tilt-series encoders (per tilt with pooling, or in the reference frame), the Hartley
decoder and the full model."""

from tomodrgn.models.decoder import HartleyDecoder, canonical_flip, gaussian_feature_matrix
from tomodrgn.models.encoder import ENCODERS, ReferenceFrameEncoder, TiltSeriesEncoder, phase_flip, reparameterize
from tomodrgn.models.mlp import mlp, parse_arch
from tomodrgn.models.pooling import POOLING_MODES, Pooling, SetPooling
from tomodrgn.models.vae import TomoDRGN

__all__ = [
    "ENCODERS",
    "ReferenceFrameEncoder",
    "POOLING_MODES",
    "HartleyDecoder",
    "Pooling",
    "SetPooling",
    "TiltSeriesEncoder",
    "TomoDRGN",
    "canonical_flip",
    "gaussian_feature_matrix",
    "mlp",
    "parse_arch",
    "phase_flip",
    "reparameterize",
]
