"""Lazy package attributes (PEP 562): a package names where each public name lives and imports that module only when
the name is first used, so importing a torch-free part of the package does not load torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: name → ``getattr(import package.<where[name]>, name)``."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
