"""The device a command runs on: ``auto``, ``cpu``, ``mps`` or ``cuda[:i]`` → a :class:`torch.device`, checked.

One function for every command (:func:`resolve_device`): a device this machine does not have, or a name torch does
not know (``gpu``), is one line naming it and the devices that are available (:class:`~tomodrgn.io.errors.InputError`,
exit 2 in the CLI), raised before any output folder is made. :func:`check_device_spec` is the torch-free part
(the spelling), for option checks that must not load torch.
"""

from __future__ import annotations

import re

from tomodrgn.io.errors import InputError

DEVICE_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|\d+)$")  # a bare number: the CUDA device (tomoDRGN's)
SPELLINGS = "auto, cpu, cuda[:i] or mps"


def check_device_spec(spec: object) -> str:
    """``spec`` if it is spelled as a device (auto, cpu, mps, cuda, cuda:i, or i for cuda:i as the published tomoDRGN
    takes it); InputError naming it otherwise."""
    if not isinstance(spec, str) or not DEVICE_SPEC.match(spec):
        raise InputError(f"--device {spec!r} is not a device: use {SPELLINGS}")
    return spec


def available_devices() -> list[str]:
    """The devices torch can use here: cpu, then cuda:0 … cuda:N−1, then mps where present."""
    import torch

    found = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0))]
    mps = getattr(torch.backends, "mps", None)
    return found + (["mps"] if mps is not None and mps.is_available() else [])


def resolve_device(spec: str, local_rank: int = 0):
    """The :class:`torch.device` for ``spec``: "auto" → cuda:local_rank when CUDA is available, else cpu; "cuda" →
    cuda:local_rank; every device checked to exist here (InputError naming it and what is available)."""
    import torch

    check_device_spec(spec)
    available = available_devices()
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if f"cuda:{local_rank}" in available else "cpu")
    dev = torch.device(f"cuda:{spec}" if spec.isdigit() else spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    name = "mps" if dev.type == "mps" else str(dev)
    if name not in available:
        n_cuda = sum(d.startswith("cuda") for d in available)
        detail = {
            "cuda": f"this machine has {n_cuda} CUDA device(s)" if n_cuda else "CUDA is not available on this machine",
            "mps": "MPS (Apple GPU) is not available on this machine",
        }.get(dev.type, "not available")
        raise InputError(f"--device {spec}: {detail}; available: {', '.join(available)}")
    return dev
