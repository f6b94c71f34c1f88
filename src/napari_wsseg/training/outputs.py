"""Write what :meth:`Method.predict` returns to files (``wsseg predict``).

Per input, a folder ``OUT/<name>/`` with every map: NIfTI (``.nii.gz``) for
volumes, float32 TIFF for 2D maps and slide grids, and next to each map that is
not at the image's resolution a ``<map>.json`` with its scale / translate (image
pixels) and class names. ``boxes.json`` holds the boxes; the thresholded
predicted mask goes to ``mask.nii.gz`` / ``mask.tif``. ``OUT/probabilities.json``
maps each input to its case-level probabilities.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_wsseg.io.atomic import atomic_write, atomic_write_text
from napari_wsseg.io.base import ImageData
from napari_wsseg.methods.base import Maps


def case_name(path: str | Path, taken: set[str]) -> str:
    """A folder name for an input: its file name without suffixes, made unique."""
    name = Path(path).name
    for suffix in (".nii.gz", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem or name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "image"
    base, i = name, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def _write_nifti(path: Path, arr: np.ndarray, like: ImageData) -> None:
    import nibabel as nib

    from napari_wsseg.io.masks import _volume_affine
    from napari_wsseg.io.nifti import to_source_orientation

    affine, source = _volume_affine(like)
    data = to_source_orientation(arr, source) if source is not None else arr.transpose(2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(np.float32)), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    atomic_write(path, lambda p: nib.save(img, str(p)))


def _write_tiff(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda p: tifffile.imwrite(p, arr, photometric="minisblack"))


def write_map(
    folder: Path, name: str, arr: np.ndarray, maps: Maps, image: ImageData
) -> list[Path]:
    """Write one map; returns the files written."""
    arr = np.asarray(arr, dtype=np.float32)
    classes = maps.classes.get(name, [])
    ndim = image.ndim
    grid = maps.grid(name, ndim)
    identity = all(s == 1 for s in grid.scale) and all(t == 0 for t in grid.translate)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    out: list[Path] = []
    spatial = arr.ndim - (1 if classes else 0)
    if ndim == 3 and spatial == 3 and identity and not image.multiscale:
        stack = arr if classes else arr[None]
        labels = classes or [""]
        for cname, vol in zip(labels, stack):
            suffix = f"_{re.sub(r'[^A-Za-z0-9._-]+', '_', cname)}" if cname else ""
            path = folder / f"{safe}{suffix}.nii.gz"
            _write_nifti(path, vol, image)
            out.append(path)
    else:
        path = folder / f"{safe}.tif"
        _write_tiff(path, arr)
        out.append(path)
    if not identity or classes or image.multiscale:
        meta = {
            "scale": list(grid.scale),
            "translate": list(grid.translate),
            "classes": list(classes),
            "shape": list(arr.shape),
            "image_shape": list(image.spatial_shape),
        }
        path = folder / f"{safe}.json"
        atomic_write_text(path, json.dumps(meta, indent=1))
        out.append(path)
    return out


def predicted_mask(maps: Maps, modality: str) -> np.ndarray | None:
    """The thresholded mask map as a label image (or a (C, Y, X) stack for X-rays)."""
    if not maps.mask or maps.mask not in maps.maps:
        return None
    prob = np.asarray(maps.maps[maps.mask], dtype=np.float32)
    classes = maps.classes.get(maps.mask, [])
    if not classes:
        return (prob >= maps.threshold).astype(np.uint8)
    if modality == "xray":
        return (prob >= maps.threshold).astype(np.uint8)
    best = prob.argmax(0)
    return np.where(prob.max(0) >= maps.threshold, best + 1, 0).astype(np.uint8)


def write_case(folder: Path, maps: Maps, image: ImageData) -> dict[str, Any]:
    """Every map, the boxes and the predicted mask of one input."""
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    for name, arr in maps.maps.items():
        files += [str(p) for p in write_map(folder, name, arr, maps, image)]
    boxes = [] if maps.boxes is None else np.asarray(maps.boxes, float).tolist()
    atomic_write_text(
        folder / "boxes.json",
        json.dumps({"boxes_yxyx": boxes, "labels": list(maps.box_labels)}, indent=1),
    )
    mask = predicted_mask(maps, image.modality)
    if (
        mask is not None
        and mask.shape[-image.ndim :] == tuple(image.spatial_shape)
        and not image.multiscale
    ):
        from napari_wsseg.io import write_mask

        suffix = ".nii.gz" if image.ndim == 3 and mask.ndim == 3 else ".tif"
        files.append(str(write_mask(folder / f"mask{suffix}", mask, like=image)))
    return {
        "files": files,
        "probabilities": dict(maps.probabilities),
        "mask_map": maps.mask,
        "threshold": maps.threshold,
    }
