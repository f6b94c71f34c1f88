"""Masks on disk: NIfTI for volumes (in the source's orientation), TIFF / PNG for 2D.

A volume mask is held in the reader's (Z, Y, X) LPS order; ``write_mask`` undoes
the reorientation with the source affine kept in ``ImageData.meta`` so the mask
lines up with the source file in any other viewer, and ``read_mask`` applies it
again. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile

from .atomic import atomic_write
from .base import ImageData, ImageReadError, InputError
from .detect import NIFTI_SUFFIXES, suffix_of
from .nifti import to_lps_zyx, to_source_orientation

MASK_SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff", ".png")


def as_label_array(array: Any, path: str | Path = "") -> np.ndarray:
    """An integer label array in the smallest unsigned type holding its values."""
    if array is None:
        raise InputError(path, "a mask must be an array of integer labels, got None")
    try:
        arr = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"a mask must be an array of integer labels ({exc})") from None
    if arr.dtype.kind not in "biuf":
        kind = {"c": "complex", "U": "text", "S": "bytes", "O": "Python object"}.get(
            arr.dtype.kind, str(arr.dtype)
        )
        raise InputError(path, f"a mask must hold integer labels, got {kind} values ({arr.dtype})")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError(path, f"a mask must hold integer labels, got {arr.dtype} values")
    lo = int(arr.min()) if arr.size else 0
    hi = int(arr.max()) if arr.size else 0
    if lo < 0:
        raise InputError(path, f"mask labels must be >= 0 (found {lo})")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if hi <= np.iinfo(dtype).max:
            return arr.astype(dtype, copy=False)
    raise InputError(path, f"mask label {hi} is too large")


def _volume_affine(like: ImageData | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(affine, source affine or None): the source's if known, else from scale/translate."""
    meta = like.meta if like is not None else {}
    if meta.get("affine") is not None:
        affine = np.asarray(meta["affine"], dtype=float)
        return affine, affine
    scale = tuple(like.scale) if like is not None and len(like.scale) == 3 else (1.0, 1.0, 1.0)
    shift = tuple(like.translate) if like is not None and len(like.translate) == 3 else (0, 0, 0)
    sz, sy, sx = scale
    tz, ty, tx = shift
    # (X, Y, Z) index order in LPS -> RAS world, the inverse of the readers' translate.
    affine = np.array(
        [[-sx, 0, 0, -tx], [0, -sy, 0, -ty], [0, 0, sz, tz], [0, 0, 0, 1]], dtype=float
    )
    return affine, None


def _write_nifti(path: Path, arr: np.ndarray, like: ImageData | None) -> None:
    if arr.ndim != 3:
        raise InputError(path, f"a NIfTI mask must be a (Z, Y, X) volume, got {arr.shape}")
    affine, source = _volume_affine(like)
    data = to_source_orientation(arr, source) if source is not None else arr.transpose(2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_data_dtype(arr.dtype)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    atomic_write(path, lambda p: nib.save(img, str(p)))


def write_mask(path: str | Path, array: Any, like: ImageData | None = None) -> Path:
    """Write a label mask atomically; the suffix picks NIfTI, TIFF (zlib) or PNG.

    ``like`` is the image the mask belongs to: its shape is checked, and for a NIfTI
    mask its affine and orientation are used so the file aligns with the source.
    (C, Y, X) stacks (X-ray findings) need TIFF.
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in MASK_SUFFIXES:
        raise InputError(path, f"unsupported mask format {suffix!r}; use one of {MASK_SUFFIXES}")
    arr = as_label_array(array, path)
    expected = like.meta.get("shape") if like is not None else None
    if expected is None and like is not None and not like.multiscale and like.data is not None:
        expected = list(like.spatial_shape)
    if expected is not None and arr.ndim == len(expected) and list(arr.shape) != list(expected):
        raise InputError(path, f"mask shape {arr.shape} does not match image shape {expected}")
    if suffix in NIFTI_SUFFIXES:
        _write_nifti(path, arr, like)
    elif suffix == ".png":
        if arr.ndim != 2 or arr.dtype == np.uint32:
            raise InputError(path, "PNG holds 2D masks with labels < 65536; use TIFF")
        atomic_write(path, lambda p: iio.imwrite(p, arr, extension=".png"))
    else:
        if arr.ndim not in (2, 3):
            raise InputError(path, f"TIFF masks are (Y, X) or (C, Y, X), got {arr.shape}")
        atomic_write(
            path,
            lambda p: tifffile.imwrite(p, arr, compression="zlib", photometric="minisblack"),
        )
    return path


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask written by :func:`write_mask` (NIfTI comes back as (Z, Y, X) LPS)."""
    path = Path(path)
    suffix = suffix_of(path)
    if not path.is_file():
        raise ImageReadError(path, "no such mask file")
    try:
        if suffix in NIFTI_SUFFIXES:
            img = nib.load(str(path))
            data = np.asanyarray(img.dataobj)
            if data.ndim != 3:
                raise ImageReadError(path, f"mask of shape {data.shape}; expected a 3D volume")
            arr = to_lps_zyx(data, np.asarray(img.affine, dtype=float))[0]
        elif suffix in (".tif", ".tiff"):
            arr = tifffile.imread(path)
        elif suffix == ".png":
            arr = np.asarray(iio.imread(path))
        else:
            raise ImageReadError(path, f"unsupported mask format {suffix!r}")
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"mask file is truncated or corrupt ({exc})") from exc
    return as_label_array(arr, path)
