"""``wsseg evaluate``: a model version's metrics on a study's ground truth.

Segmentation metrics compare the method's mask map with each image's reference
mask (the expert mask when there is no reference), per mask class; a map coarser
than the mask is resized to the mask's grid (bilinear). Classification metrics
compare case-level probabilities with the image-level labels. Where the method
returns ``instance_prob`` (MIL tiles), an instance is positive when at least half
of its cell is target in the reference mask.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.evaluation import metrics as M


def resize_to(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of a spatial map onto ``shape`` (no-op when it already fits)."""
    if tuple(arr.shape) == tuple(shape):
        return arr
    from skimage.transform import resize

    return resize(
        arr.astype(np.float32),
        shape,
        order=1,
        mode="edge",
        anti_aliasing=False,
        preserve_range=True,
    )


def cell_fraction(target: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Fraction of target pixels in each cell of a coarser grid of ``shape``."""
    t = target.astype(np.float64)
    ones = np.ones_like(t)
    for axis, n in enumerate(shape):
        starts = (np.arange(n) * t.shape[axis]) // n
        t = np.add.reduceat(t, starts, axis=axis)
        ones = np.add.reduceat(ones, starts, axis=axis)
    return t / ones


def class_targets(
    ref: np.ndarray, modality: str, names: list[str]
) -> list[tuple[str, np.ndarray]]:
    """Binary ground truth per class name (all lesions together when ``names`` is empty)."""
    from napari_wsseg.study.vocab import MASK_CLASSES

    value_of = {name: v for v, name in MASK_CLASSES.get(modality, {}).items()}
    if not names:
        return [("lesion", (ref > 0) if modality != "xray" else ref.any(0))]
    out = []
    for name in names:
        if name not in value_of:
            raise ValueError(f"map class {name!r} has no mask value for modality {modality!r}")
        v = value_of[name]
        out.append((name, ref[v - 1] > 0 if modality == "xray" else ref == v))
    return out


def _summary(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (math.nan, math.nan)


def segmentation_summary(per_class: dict[str, dict[str, list]], threshold: float) -> dict:
    out: dict[str, Any] = {}
    for name, d in per_class.items():
        dice, dice_sd = _summary(d["dice_hard"])
        lesion = [v for v, has in zip(d["dice_hard"], d["has"]) if has]
        px_mean, px_sd, px_n = M.pxap_image_level(d["prob"], d["target"])
        out[name] = {
            "n": len(d["dice_hard"]),
            "n_with_lesion": int(sum(d["has"])),
            "threshold": threshold,
            "dice_hard": dice,
            "dice_hard_std": dice_sd,
            "dice_hard_lesion": _summary(lesion)[0],
            "dice_soft": _summary(d["dice_soft"])[0],
            "iou": _summary(d["iou"])[0],
            "pxap_image": px_mean,
            "pxap_image_std": px_sd,
            "pxap_image_n": px_n,
            "pxap_dataset": M.pxap_dataset_level(d["prob"], d["target"]),
        }
    return out


def evaluate_items(method: Any, model: Any, items: list, threshold: float | None = None) -> dict:
    """Metrics of ``method``/``model`` over snapshot items (labels and reference masks)."""
    from napari_wsseg.io import read_image, read_mask

    per_class: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    labels: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    inst_true: list[float] = []
    inst_prob: list[float] = []
    used_t = 0.5
    for it in items:
        image = read_image(it.path, modality=it.modality)
        maps = method.predict(model, image)
        for name, p in maps.probabilities.items():
            if name in it.labels and it.labels[name] is not None:
                labels[name][0].append(float(it.labels[name]))
                labels[name][1].append(float(p))
        ref_path = it.reference_mask or it.mask
        if not ref_path or not maps.mask or maps.mask not in maps.maps:
            continue
        used_t = maps.threshold if threshold is None else threshold
        ref = read_mask(ref_path)
        prob = np.asarray(maps.maps[maps.mask], dtype=np.float32)
        names = list(maps.classes.get(maps.mask, []))
        stack = prob if names else prob[None]
        for (name, target), p in zip(class_targets(ref, it.modality, names), stack):
            p = resize_to(p, target.shape)
            d = per_class[name]
            d["dice_hard"].append(M.dice_hard(p, target, used_t))
            d["dice_soft"].append(M.dice_soft(p, target))
            d["iou"].append(M.iou(p >= used_t, target))
            d["has"].append(bool(target.any()))
            d["prob"].append(p)
            d["target"].append(target)
        if "instance_prob" in maps.maps:
            inst = np.asarray(maps.maps["instance_prob"], dtype=np.float32)
            truth = class_targets(ref, it.modality, [])[0][1]
            frac = cell_fraction(truth, inst.shape)
            inst_true += (frac >= 0.5).astype(float).ravel().tolist()
            inst_prob += inst.ravel().tolist()
    seg = segmentation_summary(per_class, used_t)
    out: dict[str, Any] = {
        "n_images": len(items),
        "segmentation": seg,
        "miou": float(np.nanmean([v["iou"] for v in seg.values()])) if seg else math.nan,
        "classification": {k: M.classification_metrics(y, s) for k, (y, s) in labels.items()},
    }
    if inst_true:
        out["instances"] = {**M.instance_metrics(inst_true, inst_prob), "n": len(inst_true)}
    return out


def evaluate_model(
    version_dir: str | Path,
    study: str | Path,
    device: str = "cpu",
    threshold: float | None = None,
    split: str | None = None,
) -> dict:
    """Load a model version and evaluate it on the study's images of its modality."""
    import torch

    from napari_wsseg.study.store import Study
    from napari_wsseg.training.registry import load_model

    method, model = load_model(version_dir, device=device)
    with Study.open(study) as st:
        items = st.snapshot(modality=method.modality).items
    if split:
        items = [it for it in items if it.split == split]
    with torch.inference_mode():
        result = evaluate_items(method, model, items, threshold)
    return {"model": str(version_dir), "study": str(study), **result}
