"""DICOM whole-slide images (VL Whole Slide Microscopy, modality SM) through wsidicom.

A DICOM WSI is a folder of instances, one (or more) per pyramid level, each a
multi-frame image of tiles. ``WsiDicom.open`` groups them; each level becomes a
dask array whose chunks are the level's own tiles (``read_region`` in that
level's pixels), so opening reads headers only. Level sizes and microns per
pixel come from the files (PixelSpacing of each level). A single file of such a
slide opens the folder it lies in.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pydicom

from .base import ImageData, ImageReadError
from .detect import first_dicom_file, sniff
from .slide_vendor import pyramid_image

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def is_dicom_wsi(path: str | Path) -> bool:
    """Whether ``path`` (a DICOM file, or a folder's first DICOM file) is a WSI instance."""
    path = Path(path)
    first = first_dicom_file(path, max_depth=0) if path.is_dir() else path
    if first is None:
        return False
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (pydicom.errors.InvalidDicomError, OSError, EOFError):
        return False
    return str(ds.get("SOPClassUID", "")) == WSI_SOP_CLASS


@functools.lru_cache(maxsize=4)
def _open(folder: str) -> Any:
    from wsidicom import WsiDicom

    return WsiDicom.open(folder)


def _level(folder: str, level: Any) -> da.Array:
    """One level as a lazy (Y, X, 3) uint8 array chunked by the level's tiles."""
    width, height = level.size.width, level.size.height
    tile_w, tile_h = level.tile_size.width, level.tile_size.height
    scale = int(level.level)

    def read(block_info: dict | None = None) -> np.ndarray:
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        region = _open(folder).read_region((x0, y0), scale, (x1 - x0, y1 - y0), as_array=True)
        return np.asarray(region)[..., :3]

    chunks = (
        tuple(min(tile_h, height - i) for i in range(0, height, tile_h)),
        tuple(min(tile_w, width - i) for i in range(0, width, tile_w)),
        (3,),
    )
    return da.map_blocks(read, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


def read_wsidicom(path: str | Path, modality: str | None = None) -> ImageData:
    """Open a DICOM WSI (its folder, or one of its files) as a lazy multiscale image."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        wsi = _open(str(folder))
    except Exception as exc:  # wsidicom raises WsiDicomNotFoundError, ValueError, ...
        raise ImageReadError(folder, f"wsidicom cannot open this DICOM slide ({exc})") from exc
    levels_info = list(wsi.levels)
    levels = [_level(str(folder), lv) for lv in levels_info]
    base = levels_info[0]
    mpp = (float(base.mpp.height), float(base.mpp.width)) if base.mpp is not None else None
    # the slide's instances (levels, label, overview): the folder's DICOM files
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and sniff(p) == "dicom")
    downsamples = [float(base.size.width) / lv.size.width for lv in levels_info]
    return pyramid_image(
        levels, folder, "dicom-wsi", "dicom-wsi", mpp, downsamples, modality,
        dicom_modality="SM", files=files,
    )  # fmt: skip
