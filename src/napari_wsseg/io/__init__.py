"""Readers and writers: NIfTI, DICOM (files and series), TIFF pyramids, PNG / JPEG.

``read_image(path)`` picks the reader from the file's content (DICOM files often
have no suffix) and returns an :class:`ImageData` with physical spacing, a default
display window and metadata. A folder is read as DICOM: a nested PACS / CD export
works, and a folder of several series gives its main series (``series=`` picks
another; :func:`read_dicom_folder` gives them all). ``write_mask`` / ``read_mask``
store label images in the source's own orientation. Vendor slides (NDPI, MRXS,
SCN, ...) that OpenSlide detects by content go to :mod:`.slide_vendor`, DICOM
whole-slide images to :mod:`.slide_dicom` (wsidicom). No Qt, napari or torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import MODALITIES, ImageData, ImageReadError, InputError
from .detect import describe_unknown, first_dicom_file, kind_of
from .masks import read_mask, write_mask

# A TIFF with at least this many pixels is opened lazily even without a pyramid.
LAZY_PIXELS = 2**26

__all__ = [
    "MODALITIES",
    "ImageData",
    "ImageReadError",
    "InputError",
    "can_read",
    "has_dicom_files",
    "list_dicom_series",
    "open_slide",
    "read_dicom_folder",
    "read_image",
    "read_mask",
    "slide_levels",
    "write_mask",
]


def can_read(path: str | Path) -> bool:
    """Cheap check (a few bytes read) that ``read_image`` knows this path's format.

    A folder is readable when a DICOM file lies somewhere under it (a bounded walk
    that stops at the first one found).
    """
    path = Path(path)
    try:
        if path.is_dir():
            return first_dicom_file(path) is not None
        if kind_of(path) is not None:
            return True
        from .slide_vendor import openslide_vendor

        return openslide_vendor(path) is not None  # MRXS, VMS: not TIFF by content
    except OSError:
        return False


def has_dicom_files(folder: str | Path) -> bool:
    """Whether ``folder`` itself (not its sub-folders) holds a DICOM file."""
    return Path(folder).is_dir() and first_dicom_file(folder, max_depth=0) is not None


def read_dicom_folder(
    folder: str | Path, modality: str | None = None
) -> tuple[list[ImageData], list[ImageReadError]]:
    """Every DICOM series under ``folder`` that reads, the main one first, and the
    errors of those that do not (see :mod:`napari_wsseg.io.dicom_series`)."""
    from .dicom_series import read_dicom_folder as read_all

    return read_all(folder, modality)


def list_dicom_series(folder: str | Path) -> list[dict]:
    """The series of a DICOM folder from headers only (fast: no pixels), main first:
    item ``k`` is what ``read_image(folder, series=k)`` reads (see
    :func:`napari_wsseg.io.dicom_series.list_dicom_series`)."""
    from .dicom_series import list_dicom_series as list_all

    if not Path(folder).is_dir():
        raise ImageReadError(folder, "no such folder")
    return list_all(folder)


def read_image(
    path: str | Path, modality: str | None = None, series: str | int | None = None
) -> ImageData:
    """Read any supported image; ``modality`` overrides the guess ('ct', 'mammo', ...).

    For a DICOM folder holding several series the main one is read (most slices,
    then lowest SeriesNumber); ``series`` (a SeriesInstanceUID or the index listed
    in ``meta['other_series']``) picks another. Raises :class:`ImageReadError`
    naming the file and the problem for anything that cannot be read as an image
    (missing, empty, truncated, wrong format, 4D NIfTI, inconsistent DICOM series,
    undecodable compression).
    """
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if series is not None and not path.is_dir():
        raise ValueError(f"{path}: series= applies to DICOM folders only")
    if not path.exists():
        raise ImageReadError(path, "no such file or folder")
    try:
        kind = kind_of(path)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open ({exc})") from exc
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if kind in ("tiff", None) and path.is_file():
        from .slide_vendor import read_openslide, wants_openslide

        if wants_openslide(path):  # NDPI, MRXS, SCN...: OpenSlide knows their layout
            return read_openslide(path, modality)
    if kind in ("dicom", "dicom_series"):
        from .slide_dicom import is_dicom_wsi, read_wsidicom

        if is_dicom_wsi(path):  # VL Whole Slide Microscopy: a pyramid of tiled instances
            return read_wsidicom(path, modality)
    if kind == "dicom_series":
        from .dicom_series import read_dicom_series

        return read_dicom_series(path, modality, series)
    if kind == "dicom":
        from .dicom import read_dicom_file

        return read_dicom_file(path, modality)
    if kind == "nifti":
        from .nifti import read_nifti

        return read_nifti(path, modality)
    if kind == "tiff":
        from .slide import is_slide, open_tiff, read_slide

        with open_tiff(path) as tf:
            lazy = modality == "slide" or is_slide(tf, LAZY_PIXELS)
        if lazy:
            return read_slide(path, modality)
    if kind in ("tiff", "png", "jpeg"):
        from .raster import read_raster

        return read_raster(path, kind, modality)
    raise ImageReadError(path, describe_unknown(path))


def open_slide(path: str | Path) -> ImageData:
    """Read a slide lazily (pyramid levels as dask arrays, no pixels decoded)."""
    return read_image(path, modality="slide")


def slide_levels(image: ImageData) -> list[Any]:
    """The pyramid levels of a slide (a single-level image becomes a one-level
    pyramid); ValueError naming the file when a level is not (Y, X, 3) RGB."""
    levels = list(image.data) if image.multiscale else [image.data]
    for i, lv in enumerate(levels):
        if len(lv.shape) != 3 or lv.shape[2] != 3:
            where = image.meta.get("path", "slide")
            raise ValueError(f"{where}: level {i} has shape {tuple(lv.shape)}, expected (Y, X, 3)")
    return levels
