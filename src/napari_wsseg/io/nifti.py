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


# deflate cannot compress better than about 1032:1, so a .nii.gz that claims more
# pixel bytes than this many times its own size is truncated or lies in its header
_MAX_DEFLATE_RATIO = 1100


def _check_size(path: Path, img: Any) -> None:
    """Refuse a header that claims more pixel data than the file can hold (before
    allocating it: 4096^3 int16 with 1 KB of data would ask for 128 GiB)."""
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    if any(s <= 0 for s in shape):
        raise ImageReadError(path, f"NIfTI header gives an empty shape {shape}")
    need = int(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize
    name = path.name.lower()
    have = path.stat().st_size
    offset = int(header.get("vox_offset", 0) or 0)
    plain = name.endswith(".nii") and offset + need > have
    if plain or (name.endswith(".nii.gz") and need > have * _MAX_DEFLATE_RATIO):
        raise ImageReadError(
            path,
            f"NIfTI header claims {shape} {header.get_data_dtype()} voxels ({need:,} bytes) "
            f"but the file holds {have:,} bytes: it is truncated or its header is wrong",
        )


def _check_affine(path: Path, affine: np.ndarray) -> None:
    """A usable voxel-to-world matrix: finite, voxel sizes > 0, not singular."""
    if not np.all(np.isfinite(affine)):
        raise ImageReadError(path, "NIfTI affine holds NaN or infinite values")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(sizes <= 0):
        raise ImageReadError(
            path, f"NIfTI voxel size is zero along an axis (voxel sizes {sizes.tolist()})"
        )
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-12 * float(np.prod(sizes)):
        raise ImageReadError(path, "NIfTI affine is singular (its axes are not independent)")


def _pixels(path: Path, img: Any) -> np.ndarray:
    _check_size(path, img)
    try:
        data = np.asanyarray(img.dataobj)
    except MemoryError:
        raise ImageReadError(path, f"NIfTI volume {img.shape} does not fit in memory") from None
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
    affine = np.asarray(img.affine, dtype=float)
    _check_affine(path, affine)
    data = _pixels(path, img)
    data = data.reshape(shape[:3] + (1,) * (3 - len(shape[:3])))
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
