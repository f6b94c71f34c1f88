"""Tell image formats apart by their first bytes, falling back on the file name.

DICOM files often carry no suffix, and users rename files, so the content decides
first: 'DICM' at byte 128, the NIfTI magic, and the TIFF / PNG / JPEG signatures.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff", ".btf", ".tf8")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")

# DICOM files without the 128-byte preamble start with a group 0x0002 or 0x0008 tag.
_BARE_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00")


def suffix_of(path: str | Path) -> str:
    """Lower-case suffix, treating ``.nii.gz``, ``.ome.tif(f)`` as one suffix."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def _head(path: Path, n: int = 1024) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _nifti_magic(head: bytes) -> bool:
    return (len(head) >= 348 and head[344:347] in (b"n+1", b"ni1")) or (
        len(head) >= 8 and head[4:7] in (b"n+2", b"ni2")
    )


def _gunzip_head(path: Path, n: int = 600) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def sniff(path: str | Path) -> str | None:
    """The format of a file from its content: 'dicom', 'nifti', 'tiff', 'png', 'jpeg' or None."""
    path = Path(path)
    head = _head(path)
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if _nifti_magic(head):
        return "nifti"
    if head[:2] == b"\x1f\x8b" and _nifti_magic(_gunzip_head(path)):
        return "nifti"
    if head[:2] in _BARE_DICOM_GROUPS and suffix_of(path) in DICOM_SUFFIXES + ("",):
        return "dicom"
    return None


def kind_of(path: str | Path) -> str | None:
    """The reader to use for ``path``: 'dicom_series', a :func:`sniff` kind, or None.

    Content wins over the suffix; a file whose content matches no signature is
    given to the reader its suffix names (which then raises a clear error).
    """
    path = Path(path)
    if path.is_dir():
        return "dicom_series"
    if not path.is_file():
        return None
    kind = sniff(path)
    if kind is not None:
        return kind
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in (".jpg", ".jpeg"):
        return "jpeg"
    if suffix == ".png":
        return "png"
    return None


def describe_unknown(path: str | Path) -> str:
    """Why a file is not an image we read (for error messages)."""
    return (
        "not a recognised image: no DICOM 'DICM' marker at byte 128 and no NIfTI, TIFF, "
        f"PNG or JPEG signature (suffix {suffix_of(path)!r})"
    )
