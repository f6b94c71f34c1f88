"""Tell image formats apart by their first bytes, falling back on the file name.

DICOM files often carry no suffix, and users rename files, so the content decides
first: 'DICM' at byte 128, the NIfTI magic, and the TIFF / PNG / JPEG signatures.
:func:`walk_files` and :func:`first_dicom_file` look through a folder tree (a PACS or
CD export) with bounded depth.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ome.tif", ".ome.tiff", ".btf", ".tf8")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg")

# Folder walks: how many sub-folder levels down, and names never looked at (lower case).
MAX_DEPTH = 6
SKIPPED_NAMES = frozenset({"dicomdir", "thumbs.db", "desktop.ini"})

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


def walk_files(
    folder: str | Path, max_depth: int = MAX_DEPTH, too_deep: list[Path] | None = None
) -> Iterator[Path]:
    """Files under ``folder`` in name order, a folder's own files before its sub-folders'.

    Goes at most ``max_depth`` sub-folder levels down (sub-folders left out are added
    to ``too_deep``), does not follow linked folders, and skips hidden names and
    :data:`SKIPPED_NAMES` (``DICOMDIR``, ``Thumbs.db``, ``desktop.ini``).
    """
    folder = Path(folder)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    subdirs = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name.lower() in SKIPPED_NAMES:
            continue
        if entry.is_dir(follow_symlinks=False):
            subdirs.append(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)
    for sub in subdirs:
        if max_depth <= 0:
            if too_deep is not None:
                too_deep.append(sub)
            continue
        yield from walk_files(sub, max_depth - 1, too_deep)


def first_dicom_file(
    folder: str | Path, max_depth: int = MAX_DEPTH, max_files: int = 2000
) -> Path | None:
    """The first DICOM file (by content) met by :func:`walk_files`, or None.

    Stops at the first one; looks at no more than ``max_files`` files (1 KB each).
    """
    for i, path in enumerate(walk_files(folder, max_depth)):
        if i >= max_files:
            return None
        try:
            if sniff(path) == "dicom":
                return path
        except OSError:
            continue
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
