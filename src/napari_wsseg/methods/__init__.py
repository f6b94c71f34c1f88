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
    """The Method class registered under ``name``."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return importlib.import_module(METHODS[name]).METHOD


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
