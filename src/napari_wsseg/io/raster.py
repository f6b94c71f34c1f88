"""2D images in PNG / JPEG / TIFF: mammograms, radiographs, skin photographs.

The 16-bit range is kept (no rescale to 8 bits); RGB stays RGB unless the caller
says the image is a mammogram or X-ray, where a grey image saved as RGB is
turned back into one channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from .base import ImageData, ImageReadError
from .slide import open_tiff, tiff_resolution_um
from .windows import default_window

MAMMO_MIN_SIDE = 2000


def guess_modality(data: np.ndarray, rgb: bool) -> str:
    """RGB -> skin; 16-bit grey with a side >= 2000 -> mammo; other grey -> xray."""
    if rgb:
        return "skin"
    if data.dtype.itemsize >= 2 and max(data.shape[:2]) >= MAMMO_MIN_SIDE:
        return "mammo"
    return "xray"


def _to_grey(data: np.ndarray) -> np.ndarray:
    if np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2]):
        return np.ascontiguousarray(data[..., 0])
    grey = data[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.round(grey).astype(data.dtype)


def _read_pixels(path: Path, kind: str) -> tuple[np.ndarray, str, float | None]:
    """Pixels, their axes ('YX', 'YXS' or 'ZYX') and the TIFF mm-per-pixel if known."""
    if kind == "tiff":
        tf = open_tiff(path)
        with tf:
            series = tf.series[0]
            try:
                data = series.asarray()
            except Exception as exc:
                raise ImageReadError(
                    path, f"TIFF pixel data is truncated or corrupt ({exc})"
                ) from exc
            axes = series.axes
            um = tiff_resolution_um(tf.pages.first)
        if "S" in axes and axes.index("S") < axes.index("Y"):
            data = np.moveaxis(data, axes.index("S"), -1)
            axes = axes.replace("S", "") + "S"
        return data, axes, (um / 1000.0 if um else None)
    try:
        data = np.asarray(iio.imread(path))
    except Exception as exc:
        raise ImageReadError(
            path, f"not a readable {kind.upper()} file, or it is truncated ({_why(path, exc)})"
        ) from None
    return data, ("YXS" if data.ndim == 3 else "YX"), None


def _why(path: Path, exc: Exception) -> str:
    """The decoder's own complaint: imageio, having tried every plugin, reports the
    last one (often "pip install imageio[pyav]"), which says nothing about the file."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
    except Exception as pil_exc:
        return f"{type(pil_exc).__name__}: {pil_exc}".strip()
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__


def read_raster(path: str | Path, kind: str, modality: str | None = None) -> ImageData:
    """Read a 2D PNG / JPEG / TIFF (or a grey TIFF stack as a volume)."""
    path = Path(path)
    data, axes, mm = _read_pixels(path, kind)
    rgb = False
    if data.ndim == 3 and axes.endswith("S") or (data.ndim == 3 and data.shape[-1] in (3, 4)):
        if data.shape[-1] in (2, 4):
            data = data[..., :-1]
        if data.shape[-1] == 1:
            data = data[..., 0]
        else:
            rgb = True
    if data.ndim == 3 and not rgb:
        modality = modality or "ct"
    elif data.ndim != 2 and not rgb:
        raise ImageReadError(path, f"unsupported image shape {data.shape} (axes {axes})")
    modality = modality or guess_modality(data, rgb)
    if rgb and modality in ("mammo", "xray", "ct"):
        data, rgb = _to_grey(data), False
    spatial = data.ndim - (1 if rgb else 0)
    spacing = (mm,) * spatial if mm else (1.0,) * spatial
    meta: dict[str, Any] = {
        "format": kind,
        "source_path": str(path),
        "spacing": spacing,
        "spacing_known": mm is not None,
        "dtype": str(data.dtype),
    }
    return ImageData(
        data=data,
        modality=modality,
        scale=spacing,
        # an uncalibrated grey stack is not in HU: percentile window, not the CT one
        contrast_limits=default_window(modality if spatial == 2 else "", data, rgb=rgb),
        rgb=rgb,
        meta=meta,
    )
