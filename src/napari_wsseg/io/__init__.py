"""Readers and writers: NIfTI, DICOM (files and series), TIFF pyramids, PNG / JPEG.

``read_image(path)`` picks the reader from the file's content (DICOM files often
have no suffix) and returns an :class:`ImageData` with physical spacing, a default
display window and metadata. ``write_mask`` / ``read_mask`` store label images in
the source's own orientation. No Qt, napari or torch here.
"""

from __future__ import annotations

from pathlib import Path

from .base import MODALITIES, ImageData, ImageReadError
from .detect import describe_unknown, kind_of, sniff
from .masks import read_mask, write_mask

# A TIFF with at least this many pixels is opened lazily even without a pyramid.
LAZY_PIXELS = 2**26

__all__ = [
    "MODALITIES",
    "ImageData",
    "ImageReadError",
    "can_read",
    "read_image",
    "read_mask",
    "write_mask",
]


def can_read(path: str | Path) -> bool:
    """Cheap check (a few bytes read) that ``read_image`` knows this path's format."""
    path = Path(path)
    try:
        if path.is_dir():  # a DICOM series folder: its first file decides
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            return bool(files) and sniff(files[0]) == "dicom"
        return kind_of(path) is not None
    except OSError:
        return False


def read_image(path: str | Path, modality: str | None = None) -> ImageData:
    """Read any supported image; ``modality`` overrides the guess ('ct', 'mammo', ...).

    Raises :class:`ImageReadError` naming the file and the problem for anything that
    cannot be read as an image (missing, empty, truncated, wrong format, 4D NIfTI,
    inconsistent DICOM series, undecodable compression).
    """
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if not path.exists():
        raise ImageReadError(path, "no such file or folder")
    try:
        kind = kind_of(path)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open ({exc})") from exc
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if kind == "dicom_series":
        from .dicom_series import read_dicom_series

        return read_dicom_series(path, modality)
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
