"""napari reader: thin adapter over :func:`napari_wsseg.io.read_image`.

A DICOM folder holding several series gives one image layer per series that reads,
the main one first and visible, the others hidden; series that do not read are
skipped with a warning (napari shows it as a notification).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .io import ImageData, can_read, read_dicom_folder, read_image

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


def _name(path: str) -> str:
    name = Path(path).name
    for suffix in (".nii.gz", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if Path(name).suffix else name


def _series_name(image: ImageData) -> str:
    series = image.meta["series"]
    n = series["n_slices"]
    return f"{series['label']} ({n} slice{'s' if n != 1 else ''})"


def _folder_layers(path: str) -> list[LayerData]:
    images, problems = read_dicom_folder(path)
    for err in problems:
        warnings.warn(f"{err} (not opened)", stacklevel=3)
    if len(images) + len(problems) == 1:
        return [(images[0].data, {**images[0].layer_kwargs(), "name": _name(path)}, "image")]
    layers: list[LayerData] = []
    for i, image in enumerate(images):
        kwargs = {**image.layer_kwargs(), "name": _series_name(image), "visible": i == 0}
        layers.append((image.data, kwargs, "image"))
    return layers


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """Read each path into image LayerData tuples (data, kwargs, 'image')."""
    layers: list[LayerData] = []
    for p in _paths(path):
        if Path(p).is_dir():
            layers += _folder_layers(p)
            continue
        image = read_image(p)
        layers.append((image.data, {**image.layer_kwargs(), "name": _name(p)}, "image"))
    return layers
