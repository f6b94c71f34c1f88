"""NIfTI volumes, reoriented so axial slices come first: (Z, Y, X) in LPS order.

Index order after reading: Z runs inferior -> superior, Y anterior -> posterior and
X right -> left (the DICOM / radiological convention: patient's left on the
screen's right, anterior at the top). The source affine and the orientation
transform are kept in ``meta`` so :func:`to_source_orientation` can put a mask
back into the file's own voxel order.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from .base import ImageData, ImageReadError
from .windows import default_window

_LPS = nio.axcodes2ornt(("L", "P", "S"))


def _load(path: Path) -> Any:
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad header
        raise ImageReadError(path, f"not a readable NIfTI file ({exc})") from exc


def _pixels(path: Path, img: Any) -> np.ndarray:
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ImageReadError(path, f"NIfTI pixel data is truncated or corrupt ({exc})") from exc
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    return data


def to_lps_zyx(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient a source-ordered (i, j, k) volume to (Z, Y, X) LPS.

    Returns the array, the orientation transform (nibabel ``ornt``) and the affine of
    the reoriented (X, Y, Z) voxel grid.
    """
    xform = nio.ornt_transform(nio.io_orientation(affine), _LPS)
    lps = nio.apply_orientation(data, xform)
    new_affine = affine @ nio.inv_ornt_aff(xform, data.shape[:3])
    return np.ascontiguousarray(lps.transpose(2, 1, 0)), xform, new_affine


def to_source_orientation(zyx: np.ndarray, affine: Any) -> np.ndarray:
    """Undo :func:`to_lps_zyx`: a (Z, Y, X) LPS array back to the voxel order of the
    source whose affine is ``affine``."""
    inverse = nio.ornt_transform(_LPS, nio.io_orientation(np.asarray(affine, dtype=float)))
    return np.ascontiguousarray(nio.apply_orientation(zyx.transpose(2, 1, 0), inverse))


def _oblique(affine: np.ndarray) -> bool:
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return bool(np.abs(np.abs(rot) - np.round(np.abs(rot))).max() > 1e-3)


def read_nifti(path: str | Path, modality: str | None = None) -> ImageData:
    """Read a 3D NIfTI (.nii / .nii.gz) as a (Z, Y, X) volume with mm spacing."""
    path = Path(path)
    img = _load(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        raise ImageReadError(
            path, f"{len(shape)}D NIfTI of shape {shape} where a 3D volume was expected"
        )
    data = _pixels(path, img)
    data = data.reshape(shape[:3] + (1,) * (3 - len(shape[:3])))
    affine = np.asarray(img.affine, dtype=float)
    zyx, xform, new_affine = to_lps_zyx(data, affine)
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(new_affine))
    ox, oy, oz = (float(v) for v in new_affine[:3, 3])
    modality = modality or "ct"
    meta: dict[str, Any] = {
        "format": "nifti",
        "source_path": str(path),
        "spacing": (sz, sy, sx),
        "orientation": "LPS",
        "axes": "zyx",
        "affine": affine.tolist(),
        "source_axcodes": "".join(nio.aff2axcodes(affine)),
        "nifti_ornt": xform.tolist(),
        "source_shape": list(data.shape),
        "shape": list(zyx.shape),
        "oblique": _oblique(affine),
    }
    return ImageData(
        data=zyx,
        modality=modality,
        scale=(sz, sy, sx),
        # RAS world origin -> LPS, in (Z, Y, X) order.
        translate=(oz, -oy, -ox),
        contrast_limits=default_window(modality, zyx),
        meta=meta,
    )
