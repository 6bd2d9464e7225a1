"""Neural networks: MLPs, the tilt-series encoders (per tilt with pooling, or in the reference frame), the Hartley
decoder and the full model.

Names are imported lazily (on first use), so importing :mod:`tomodrgn.models.names` (torch-free option names) does
not load torch.
"""

from __future__ import annotations

import importlib

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


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
