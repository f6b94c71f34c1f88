"""Whole-slide images opened lazily: pyramidal / tiled TIFF, SVS, OME-TIFF.

``TiffFile.series[0].aszarr()`` exposes every pyramid level as a zarr array whose
chunks are the file's tiles; ``dask.array.from_zarr`` wraps each level. Opening
reads the TIFF tags only, never pixels, so memory does not grow with slide size.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr

from .base import ImageData, ImageReadError

_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}  # TIFF ResolutionUnit inch / centimetre in microns
_OME_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def open_tiff(path: Path) -> tifffile.TiffFile:
    """Open a TIFF (tags only); ImageReadError if it is not a readable TIFF."""
    try:
        tf = tifffile.TiffFile(path)
        if not tf.series:
            raise ValueError("no image series")
        return tf
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error ...
        raise ImageReadError(path, f"not a readable TIFF file ({exc})") from exc


def tiff_resolution_um(page: Any) -> float | None:
    """Microns per pixel from XResolution / ResolutionUnit, if plausible for a slide."""
    unit = int(getattr(page, "resolutionunit", 1) or 1)
    xres = page.tags.get("XResolution")
    if unit not in _UM_PER_UNIT or xres is None:
        return None
    num, den = xres.value
    if not num or not den:
        return None
    mpp = _UM_PER_UNIT[unit] * den / num
    return mpp if 0.01 <= mpp <= 1000.0 else None  # 72 dpi and friends mean "unknown"


def slide_mpp(tf: tifffile.TiffFile) -> tuple[float, float] | None:
    """(mpp_y, mpp_x) from the SVS description, OME PhysicalSize, or resolution tags."""
    page = tf.pages.first
    desc = page.description or ""
    if tf.is_svs:
        m = re.search(r"MPP\s*=\s*([0-9.eE+-]+)", desc)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)), float(m.group(1))
    if tf.is_ome and tf.ome_metadata:
        xml = tf.ome_metadata
        sizes = []
        for ax in ("Y", "X"):
            m = re.search(rf'PhysicalSize{ax}="([0-9.eE+-]+)"', xml)
            u = re.search(rf'PhysicalSize{ax}Unit="([^"]+)"', xml)
            if m is None:
                break
            sizes.append(float(m.group(1)) * _OME_UNITS_UM.get(u.group(1) if u else "µm", 1.0))
        if len(sizes) == 2 and min(sizes) > 0:
            return sizes[0], sizes[1]
    mpp = tiff_resolution_um(page)
    return (mpp, mpp) if mpp else None


def _to_yxc(arr: da.Array, axes: str) -> tuple[da.Array, str]:
    """Lazily drop extra leading axes and move samples / channels last."""
    index = tuple(slice(None) if a in "YXSC" else 0 for a in axes)
    arr = arr[index]
    axes = "".join(a for a in axes if a in "YXSC")
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a in "SC"]
    arr = arr.transpose(order)
    return arr, "YXC" if arr.ndim == 3 else "YX"


def read_slide(path: str | Path, modality: str | None = None) -> ImageData:
    """Open a slide lazily as a multiscale list of dask arrays, finest first."""
    path = Path(path)
    tf = open_tiff(path)
    series = tf.series[0]
    try:
        node = zarr.open(series.aszarr(), mode="r")
    except Exception as exc:
        raise ImageReadError(path, f"cannot map TIFF tiles as a zarr array ({exc})") from exc
    if isinstance(node, zarr.Array):
        raw = [da.from_zarr(node)]
    else:
        raw = [da.from_zarr(node[str(i)]) for i in range(len(series.levels))]
    levels, axes = zip(*(_to_yxc(a, series.axes) for a in raw))
    levels = list(levels)
    channels = levels[0].shape[2] if axes[0] == "YXC" else 1
    if channels in (2, 4):  # grey + alpha, RGBA: drop alpha
        levels = [lv[..., : channels - 1] for lv in levels]
        channels -= 1
    if channels == 1 and axes[0] == "YXC":
        levels = [lv[..., 0] for lv in levels]
    elif channels not in (1, 3):
        raise ImageReadError(path, f"slide with {channels} channels; expected grey or RGB")
    rgb = channels == 3
    mpp = slide_mpp(tf)
    base = levels[0].shape
    meta: dict[str, Any] = {
        "format": "tiff",
        "source_path": str(path),
        "mpp": mpp or (1.0, 1.0),
        "mpp_known": mpp is not None,
        "spacing": mpp or (1.0, 1.0),
        "unit": "micron",
        "axes": series.axes,
        "level_shapes": [list(lv.shape) for lv in levels],
        "level_downsamples": [float(base[0]) / float(lv.shape[0]) for lv in levels],
        "kind": "svs" if tf.is_svs else "ome" if tf.is_ome else "tiff",
    }
    mag = re.search(r"AppMag\s*=\s*([0-9.]+)", tf.pages.first.description or "")
    if mag:
        meta["magnification"] = float(mag.group(1))
    limits = None
    if not rgb and np.issubdtype(levels[0].dtype, np.integer):
        info = np.iinfo(levels[0].dtype)
        limits = (float(info.min), float(info.max))
    return ImageData(
        data=levels,
        modality=modality or "slide",
        scale=tuple(meta["mpp"]),
        contrast_limits=limits,
        rgb=rgb,
        multiscale=True,
        meta=meta,
    )


def check_tiles(image: ImageData, path: str | Path, n: int = 8) -> None:
    """Decode a sample of a slide's tiles (first, last and ``n`` spread between, on
    the finest level; the coarsest level whole): opening reads tags only, so a file cut
    short is otherwise found only when training reaches its missing tiles."""
    levels = image.data if image.multiscale else [image.data]
    finest = levels[0]
    grid = [len(c) for c in finest.chunks]
    total = int(np.prod(grid))
    picks = sorted({int(round(i)) for i in np.linspace(0, total - 1, num=min(total, n + 2))})
    try:
        for flat in picks:
            idx = np.unravel_index(flat, grid)
            block = finest.blocks[tuple(int(i) for i in idx)]
            np.asarray(block.compute())
        if len(levels) > 1 and int(np.prod(levels[-1].shape)) <= 2**24:
            np.asarray(levels[-1].compute())
    except Exception as exc:  # imagecodecs errors, short reads, bad offsets ...
        first = str(exc).strip().splitlines()
        why = f"{type(exc).__name__}: {first[0]}" if first else type(exc).__name__
        raise ImageReadError(
            path, f"slide tiles do not decode (truncated or corrupt file: {why})"
        ) from None


def is_slide(tf: tifffile.TiffFile, lazy_pixels: int) -> bool:
    """Whether a TIFF should be opened lazily: SVS, OME, pyramidal, or very large."""
    series = tf.series[0]
    shape = series.levels[0].shape
    yx = [s for s, a in zip(shape, series.axes) if a in "YX"]
    pixels = int(np.prod(yx)) if len(yx) == 2 else 0
    return bool(tf.is_svs or tf.is_ome or len(series.levels) > 1 or pixels >= lazy_pixels)
