"""napari reader: thin adapter over :func:`napari_wsseg.io.read_image`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .io import can_read, read_image

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]


def _paths(path: str | Sequence[str]) -> list[str]:
    return [path] if isinstance(path, (str, Path)) else [str(p) for p in path]


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """Return a reader for ``path`` (or a list of paths) if every one is readable, else None.

    Only a few header bytes are read here; broken files raise a clear
    :class:`~napari_wsseg.io.ImageReadError` from the returned callable instead.
    """
    paths = _paths(path)
    if not paths or not all(can_read(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Read each path into an image LayerData tuple (data, kwargs, 'image')."""
    layers: list[LayerData] = []
    for p in _paths(path):
        image = read_image(p)
        kwargs = image.layer_kwargs()
        name = Path(p).name
        for suffix in (".nii.gz", ".ome.tiff", ".ome.tif"):
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        else:
            name = Path(name).stem if Path(name).suffix else name
        kwargs["name"] = name
        layers.append((image.data, kwargs, "image"))
    return layers
