"""Vendor whole-slide formats through OpenSlide (NDPI, MRXS, SCN, BIF, VMS, Philips TIFF).

The backend is chosen by content: ``OpenSlide.detect_format`` opens the file and
names its vendor. Aperio SVS and generic tiled TIFF stay with tifffile (the
reader of :mod:`.slide`, which maps tiles straight to zarr chunks); every other
vendor OpenSlide recognises is read here. Levels are dask arrays whose chunks are
``read_region`` calls, so opening reads no pixels; level sizes, downsamples and
microns per pixel come from the file (``openslide.mpp-x/-y``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .base import ImageData, ImageReadError

# Formats tifffile reads itself (see slide.py); OpenSlide reads the other vendors.
TIFFFILE_VENDORS = ("aperio", "generic-tiff")
CHUNK = 512


def openslide_vendor(path: str | Path) -> str | None:
    """The vendor OpenSlide detects in ``path`` ('hamamatsu', 'mirax', ...), or None
    (not a slide it knows, or openslide not installed)."""
    try:
        import openslide
    except ImportError:  # openslide-python / openslide-bin not installed
        return None
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # OpenSlideError, OSError on unreadable files
        return None


def wants_openslide(path: str | Path) -> bool:
    """Whether ``path`` is a vendor slide that OpenSlide, not tifffile, should read."""
    vendor = openslide_vendor(path)
    return vendor is not None and vendor not in TIFFFILE_VENDORS


@functools.lru_cache(maxsize=8)
def _open(path: str) -> Any:
    import openslide

    return openslide.OpenSlide(path)


def _sizes(total: int, step: int) -> tuple[int, ...]:
    return tuple(min(step, total - i) for i in range(0, total, step))


def _level(path: str, level: int, width: int, height: int, downsample: float) -> da.Array:
    """One level as a lazy (Y, X, 3) uint8 array; each chunk is one read_region call."""

    def read(block_info: dict | None = None) -> np.ndarray:
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        origin = (int(round(x0 * downsample)), int(round(y0 * downsample)))
        rgba = np.asarray(_open(path).read_region(origin, level, (x1 - x0, y1 - y0)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255  # outside the scanned area: white, as on glass
        return rgb

    chunks = (_sizes(height, CHUNK), _sizes(width, CHUNK), (3,))
    return da.map_blocks(read, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


def _float(props: Any, key: str) -> float | None:
    try:
        value = float(props[key])
    except (KeyError, ValueError, TypeError):
        return None
    return value if value > 0 else None


def read_openslide(path: str | Path, modality: str | None = None) -> ImageData:
    """Open a vendor slide lazily as a multiscale list of dask arrays, finest first."""
    path = Path(path)
    try:
        slide = _open(str(path))
    except Exception as exc:
        raise ImageReadError(path, f"OpenSlide cannot open this slide ({exc})") from exc
    props = slide.properties
    levels = [
        _level(str(path), i, w, h, float(d))
        for i, ((w, h), d) in enumerate(zip(slide.level_dimensions, slide.level_downsamples))
    ]
    mpp_x, mpp_y = _float(props, "openslide.mpp-x"), _float(props, "openslide.mpp-y")
    mpp = (mpp_y, mpp_x) if mpp_x and mpp_y else None
    extra: dict[str, Any] = {"vendor": props.get("openslide.vendor", "")}
    mag = _float(props, "openslide.objective-power")
    if mag:
        extra["magnification"] = mag
    kind = props.get("openslide.vendor", "openslide")
    downsamples = [float(d) for d in slide.level_downsamples]
    return pyramid_image(levels, path, "openslide", kind, mpp, downsamples, modality, **extra)


def pyramid_image(
    levels: list[Any],
    source: Path,
    fmt: str,
    kind: str,
    mpp: tuple[float, float] | None,
    downsamples: list[float],
    modality: str | None,
    **extra: Any,
) -> ImageData:
    """A lazy slide pyramid from a vendor backend (OpenSlide, wsidicom) as the same
    ``ImageData`` the tifffile reader gives: RGB levels, microns per pixel as scale
    (1.0 when the file gives none, ``mpp_known`` False), level shapes and downsamples."""
    meta: dict[str, Any] = {
        "format": fmt,
        "source_path": str(source),
        **extra,
        "mpp": mpp or (1.0, 1.0),
        "mpp_known": mpp is not None,
        "spacing": mpp or (1.0, 1.0),
        "unit": "micron",
        "level_shapes": [list(lv.shape) for lv in levels],
        "level_downsamples": downsamples,
        "kind": kind,
    }
    return ImageData(
        data=levels,
        modality=modality or "slide",
        scale=tuple(meta["mpp"]),
        rgb=True,
        multiscale=True,
        meta=meta,
    )
