"""Neural networks: MLPs, the tilt-series encoders (per tilt with pooling, or in the reference frame), the Hartley
decoder and the full model.

Names are imported lazily (on first use), so importing :mod:`tomodrgn.models.names` (torch-free option names) does
not load torch.
"""

from __future__ import annotations

from tomodrgn.lazy import lazy_getattr

_WHERE = {
    "HartleyDecoder": "decoder",
    "canonical_flip": "decoder",
    "gaussian_feature_matrix": "decoder",
    "ENCODERS": "names",
    "ReferenceFrameEncoder": "encoder",
    "TiltSeriesEncoder": "encoder",
    "phase_flip": "encoder",
    "reparameterize": "encoder",
    "mlp": "mlp",
    "parse_arch": "names",
    "POOLING_MODES": "names",
    "Pooling": "pooling",
    "SetPooling": "pooling",
    "TomoDRGN": "vae",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)
