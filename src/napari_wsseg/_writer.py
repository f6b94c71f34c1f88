"""napari Labels writer: thin adapter over :func:`napari_wsseg.io.write_mask`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .io import ImageData, write_mask


def _like(meta: dict[str, Any], shape: tuple[int, ...]) -> ImageData | None:
    """An ImageData carrying the source geometry found in the layer's metadata, if any."""
    source = dict(meta.get("metadata") or {})
    scale = tuple(float(s) for s in (meta.get("scale") or ()))
    translate = tuple(float(t) for t in (meta.get("translate") or ()))
    if not source and not scale:
        return None
    if source.get("shape") is not None and list(source["shape"]) != list(shape):
        # the labels do not cover the image the metadata came from: keep only scale
        source = {}
    return ImageData(
        data=None,
        modality=str(source.get("modality", "")),
        scale=scale,
        translate=translate,
        meta=source,
    )


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer as a mask (NIfTI keeps the source affine, else TIFF / PNG)."""
    if isinstance(data, (list, tuple)):  # multiscale labels: the finest level
        data = data[0]
    array = np.asarray(data)
    written = write_mask(path, array, like=_like(meta or {}, array.shape))
    return [str(written)]
