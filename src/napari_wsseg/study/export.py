"""A study handed to other tools: a MONAI datalist JSON and nnU-Net's raw-data layout.

**MONAI** (:func:`export_monai`): ``datalist.json`` in the Medical Segmentation
Decathlon form that ``monai.data.load_decathlon_datalist`` reads. ``training`` and
``validation`` hold the images with an accepted mask (``image``, ``label``),
``weak`` the images with image-level labels only; every item carries
``class_labels`` (the weak labels, 0/1 by name) and ``image_id``. Paths are
relative to the JSON's folder and point into the study (nothing is copied).

**nnU-Net v2** (:func:`export_nnunet`): ``Dataset<ID>_<name>/`` with ``imagesTr``,
``labelsTr`` and ``dataset.json``, for the segmentation sets nnU-Net trains on:
CT volumes as NIfTI (image and label share the source affine, so geometry
matches) and mammograms / skin images as PNG (``NaturalImage2DIO``). Only images
with an accepted mask are written. X-ray findings overlap (one channel each), so
they are no label map and are refused, as are slides (gigapixel pyramids).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.io.atomic import atomic_write, atomic_write_text
from napari_wsseg.study.vocab import MASK_CLASSES

if TYPE_CHECKING:
    from napari_wsseg.study.store import Study

NNUNET_MODALITIES = ("ct", "mammo", "skin")


def _rel(path: str | Path, start: Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), start.resolve()).replace(os.sep, "/")


def export_monai(
    study: Study,
    out: str | Path,
    modality: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write a MONAI datalist of ``study`` (one modality, or all) to ``out`` (a .json file)."""
    out = Path(out)
    if out.suffix != ".json":
        raise ValueError(f"{out}: a MONAI datalist is a .json file")
    out.parent.mkdir(parents=True, exist_ok=True)
    snap = study.snapshot(modality, val_fraction=val_fraction, seed=seed)
    lists: dict[str, list[dict[str, Any]]] = {"training": [], "validation": [], "weak": []}
    for item in snap.items:
        entry: dict[str, Any] = {
            "image": _rel(item.path, out.parent),
            "image_id": item.image_id,
            "modality": item.modality,
            "class_labels": item.labels,
        }
        if item.mask is not None:
            entry["label"] = _rel(item.mask, out.parent)
            entry["mask_version"] = item.mask_version
            lists["validation" if item.split == "val" else "training"].append(entry)
        elif item.labels:
            lists["weak"].append(entry)
    mods = sorted({it.modality for it in snap.items})
    classes = MASK_CLASSES[mods[0]] if len(mods) == 1 else {}
    doc = {
        "name": study.root.name,
        "description": "exported by napari-wsseg: accepted masks and image-level labels",
        "modality": mods,
        "labels": {"0": "background", **{str(k): v for k, v in classes.items()}},
        "numTraining": len(lists["training"]),
        **lists,
    }
    atomic_write_text(out, json.dumps(doc, indent=1))
    return out


def _case_name(rec_id: int, relpath: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "", Path(relpath).name.split(".")[0])[:24] or "case"
    return f"{stem}_{rec_id:04d}"


def _write_nifti_pair(image: Any, mask: np.ndarray, img_path: Path, lab_path: Path) -> None:
    """Image and label in the source's voxel order with one affine (write_mask's)."""
    import nibabel as nib

    from napari_wsseg.io import write_mask
    from napari_wsseg.io.nifti import to_source_orientation

    write_mask(lab_path, mask, like=image)
    affine = nib.load(str(lab_path)).affine
    data = np.asarray(image.data)
    if image.meta.get("affine") is not None:
        data = to_source_orientation(data, image.meta["affine"])
    else:
        data = data.transpose(2, 1, 0)
    nii = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    nii.set_sform(affine, code=1)
    nii.set_qform(affine, code=1)
    atomic_write(img_path, lambda p: nib.save(nii, str(p)))


def _write_png(path: Path, array: np.ndarray) -> None:
    import imageio.v3 as iio

    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / max(hi - lo, 1e-9) * 65535).astype(np.uint16)
    atomic_write(path, lambda p: iio.imwrite(p, arr, extension=".png"))


def export_nnunet(
    study: Study, out_dir: str | Path, modality: str, dataset_id: int = 501, name: str = ""
) -> Path:
    """Write ``Dataset<ID>_<name>`` (nnU-Net v2 raw data) under ``out_dir``; returns it."""
    from napari_wsseg.io import read_image

    if modality not in NNUNET_MODALITIES:
        raise ValueError(
            f"nnU-Net export covers {NNUNET_MODALITIES}, not {modality!r} (X-ray findings "
            "overlap and are no label map; slides are pyramids)"
        )
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset id must be 1..999, got {dataset_id}")
    name = re.sub(r"[^A-Za-z0-9]+", "", name or study.root.name) or "Study"
    root = Path(out_dir) / f"Dataset{dataset_id:03d}_{name}"
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: exists and is not empty; choose another id or folder")
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(exist_ok=True)
    ending = ".nii.gz" if modality == "ct" else ".png"
    n, rgb = 0, False
    for rec in study.images(modality):
        version = study.latest_accepted_mask(rec.id)
        if version is None:
            continue
        image = read_image(rec.path, modality)
        mask = study.load_mask(version.id)
        case = _case_name(rec.id, rec.relpath)
        img_path = root / "imagesTr" / f"{case}_0000{ending}"
        lab_path = root / "labelsTr" / f"{case}{ending}"
        if modality == "ct":
            _write_nifti_pair(image, mask, img_path, lab_path)
        else:
            rgb = rgb or image.rgb
            _write_png(img_path, np.asarray(image.data))
            _write_png(lab_path, mask.astype(np.uint8))
        n += 1
    if n == 0:
        raise ValueError(f"study {study.root}: no {modality} image has an accepted mask")
    channels = (
        {"0": "CT"}
        if modality == "ct"
        else ({"0": "R", "1": "G", "2": "B"} if rgb else {"0": modality})
    )
    labels = {"background": 0, **{v: k for k, v in MASK_CLASSES[modality].items()}}
    doc = {
        "channel_names": channels,
        "labels": labels,
        "numTraining": n,
        "file_ending": ending,
        "overwrite_image_reader_writer": "NibabelIO" if modality == "ct" else "NaturalImage2DIO",
        "name": name,
        "description": "exported by napari-wsseg from accepted mask versions",
    }
    atomic_write_text(root / "dataset.json", json.dumps(doc, indent=1))
    return root
