"""The seed methods, one module each, found by name without importing torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_wsseg.methods.base import Method

# name -> module; each module defines ``METHOD`` (a Method subclass).
METHODS: dict[str, str] = {
    "iagnet": "napari_wsseg.methods.iagnet",
    "glam": "napari_wsseg.methods.glam",
    "distill": "napari_wsseg.methods.distill",
    "chexseg": "napari_wsseg.methods.chexseg",
    "manifold": "napari_wsseg.methods.manifold",
}

# The modality each method works on (kept here so the dock can filter without torch).
METHOD_MODALITY: dict[str, str] = {
    "iagnet": "ct",
    "glam": "mammo",
    "distill": "slide",
    "chexseg": "xray",
    "manifold": "skin",
}


def get_method(name: str) -> type[Method]:
    """The Method class registered under ``name``, or found by import path.

    Besides the registered names, ``package.module`` (a module defining ``METHOD``)
    and ``package.module:Class`` are accepted, so a method outside this package
    (a test method, a user's own) runs through the same engine and CLI.
    """
    if name in METHODS:
        return importlib.import_module(METHODS[name]).METHOD
    if "." in name or ":" in name:
        mod, _, attr = name.partition(":")
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as err:
            raise KeyError(f"method {name!r}: cannot import module {mod!r} ({err})") from None
        try:
            return getattr(module, attr or "METHOD")
        except AttributeError:
            raise KeyError(f"method {name!r}: {mod} defines no {attr or 'METHOD'}") from None
    raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")


def available_methods() -> list[str]:
    """Registered methods whose module imports (a method in progress is left out)."""
    out = []
    for name, mod in METHODS.items():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
            continue
        out.append(name)
    return out
