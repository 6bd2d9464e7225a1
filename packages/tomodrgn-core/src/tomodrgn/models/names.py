"""Names and architecture strings of the networks, without importing torch (the CLI parser and
:class:`~tomodrgn.runs.config.TrainConfig` validate options with these, so ``tomodrgn --help`` stays fast)."""

from __future__ import annotations

from tomodrgn.io.errors import InputError

#: encoder kinds (see :mod:`tomodrgn.models.encoder`)
ENCODERS = ("per-tilt", "reference-frame")

#: pooling of per-tilt embeddings (see :mod:`tomodrgn.models.pooling`)
POOLING_MODES = ("concatenate", "max", "mean", "median", "set")


def parse_arch(spec: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"256x3"`` (or ``(256, 3)``) → (nodes, layers). ``layers`` counts hidden layers (≥ 1)."""
    if isinstance(spec, str):
        parts = spec.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError(f"architecture must look like '256x3' (nodes x layers), got {spec!r}")
        nodes, layers = int(parts[0]), int(parts[1])
    else:
        nodes, layers = (int(v) for v in spec)
    if nodes < 1 or layers < 1:
        raise InputError(f"architecture needs nodes ≥ 1 and layers ≥ 1, got {spec!r}")
    return nodes, layers
