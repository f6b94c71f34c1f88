"""``wsseg evaluate``: a model version's metrics on a study's ground truth.

Segmentation metrics compare the method's mask map with each image's reference
mask (the expert mask when there is no reference), per mask class (named as in
``study.vocab.MASK_CLASSES``); a map coarser than the mask is resampled onto the
mask's grid (bilinear) through its :class:`Grid`. Classification metrics compare
case-level probabilities with the image-level labels. Where the method returns
``instance_prob`` (MIL tiles), an instance is positive when at least half of its
tile's pixels (placed by the map's Grid) are target in the reference mask; only
tiles marked valid in ``Maps.valid`` (foreground, as the tiler kept them) count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg import metrics as M
from napari_wsseg.methods.base import Grid, Maps


def _cell_edges(grid: Grid | None, axis: int, n: int, size: int) -> np.ndarray:
    """Image-pixel edges (n + 1,) of the ``n`` cells of a map along ``axis``.

    With a :class:`Grid`, cell i covers image pixels ``[round(o + i*s), round(o + (i+1)*s))``
    where ``s`` is the scale and ``o = translate - (s - 1) / 2`` the first cell's start,
    the tiler's rounding (``TileGrid.origin0``); edges are clipped to the image. Without
    one, the map is taken to cover the whole image in ``n`` near-equal parts.
    """
    i = np.arange(n + 1)
    if grid is None:
        return (i * size) // n
    s, t = float(grid.scale[axis]), float(grid.translate[axis])
    return np.clip(np.round(t - (s - 1) / 2 + i * s), 0, size).astype(np.int64)


def resize_to(arr: np.ndarray, shape: tuple[int, ...], grid: Grid | None = None) -> np.ndarray:
    """Bilinear resample of a spatial map onto an image grid of ``shape``.

    With ``grid`` (the map's :class:`Grid`), image pixel y reads the map at
    ``(y - translate) / scale``, clamped to the edge values inside the map's extent;
    image pixels the map does not cover (a slide's partial edge tiles, which the
    tiler drops) get 0. Without a grid the map is stretched over the whole image.
    No-op when the map already has ``shape`` and no grid moves it.
    """
    identity = grid is None or (
        all(float(v) == 1.0 for v in grid.scale) and all(float(v) == 0.0 for v in grid.translate)
    )
    if tuple(arr.shape) == tuple(shape) and identity:
        return arr
    if grid is None:
        from skimage.transform import resize

        return resize(
            arr.astype(np.float32),
            shape,
            order=1,
            mode="edge",
            anti_aliasing=False,
            preserve_range=True,
        )
    out = arr.astype(np.float32)
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        u = (np.arange(size) - float(grid.translate[axis])) / float(grid.scale[axis])
        inside = (u >= -0.5) & (u < n - 0.5)
        uc = np.clip(u, 0, n - 1)
        i0 = np.floor(uc).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        view = [1] * out.ndim
        view[axis] = size
        w = (uc - i0).reshape(view).astype(np.float32)
        keep = inside.reshape(view)
        out = (out.take(i0, axis) * (1 - w) + out.take(i1, axis) * w) * keep
    return out


def cell_fraction(
    target: np.ndarray, shape: tuple[int, ...], grid: Grid | None = None
) -> np.ndarray:
    """Fraction of target pixels in each cell of a coarser map of ``shape``.

    With the map's ``grid``, cell (i, j) covers exactly the image pixels of tile
    (i, j) (see :func:`_cell_edges`); pixels past the last whole tile belong to no
    cell. A cell that covers no image pixel is NaN.
    """
    t = target.astype(np.float64)
    counts = np.ones(1)
    for axis, n in enumerate(shape):
        edges = _cell_edges(grid, axis, n, t.shape[axis])
        pad = [(0, 0)] * t.ndim
        pad[axis] = (1, 0)
        cum = np.pad(np.cumsum(t, axis=axis), pad)
        t = cum.take(edges[1:], axis) - cum.take(edges[:-1], axis)
        view = [1] * len(shape)
        view[axis] = n
        counts = counts * np.diff(edges).reshape(view)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, t / np.maximum(counts, 1), np.nan)


def class_targets(
    ref: np.ndarray, modality: str, names: list[str]
) -> list[tuple[str, np.ndarray]]:
    """Binary ground truth per class name.

    With ``names`` empty (a map without a class axis) all mask classes together,
    named after the modality's mask classes (``MASK_CLASSES``): ``tumor`` for
    slides, ``malignant+benign`` for mammograms; ``foreground`` for a modality
    without mask classes.
    """
    from napari_wsseg.study.vocab import MASK_CLASSES

    value_of = {name: v for v, name in MASK_CLASSES.get(modality, {}).items()}
    if not names:
        label = "+".join(value_of) or "foreground"
        return [(label, (ref > 0) if modality != "xray" else ref.any(0))]
    out = []
    for name in names:
        if name not in value_of:
            raise ValueError(f"map class {name!r} has no mask value for modality {modality!r}")
        v = value_of[name]
        out.append((name, ref[v - 1] > 0 if modality == "xray" else ref == v))
    return out


def instance_pairs(maps: Maps, truth: np.ndarray, source: str = "") -> tuple[list, list]:
    """(0/1 truth, probability) of the foreground tiles of ``maps.maps["instance_prob"]``.

    A tile is positive when at least half of its pixels (placed by the map's Grid)
    are target. Tiles outside ``maps.valid["instance_prob"]`` (background dropped by
    the tiler, probability 0 without a prediction) and cells covering no pixel are
    left out: counting them would score them as correct negatives.
    """
    inst = np.asarray(maps.maps["instance_prob"], dtype=np.float32)
    frac = cell_fraction(truth, inst.shape, maps.grids.get("instance_prob"))
    valid = np.isfinite(frac)
    if "instance_prob" in maps.valid:
        mask = np.asarray(maps.valid["instance_prob"], dtype=bool)
        if mask.shape != inst.shape:
            raise ValueError(
                f"{source}: valid mask of instance_prob has shape {mask.shape}, "
                f"the map {inst.shape}"
            )
        valid &= mask
    return (frac[valid] >= 0.5).astype(float).tolist(), inst[valid].tolist()


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
        grid = maps.grids.get(maps.mask)
        for (name, target), p in zip(class_targets(ref, it.modality, names), stack):
            p = resize_to(p, target.shape, grid)
            d = per_class[name]
            d["dice_hard"].append(M.dice_hard(p, target, used_t))
            d["dice_soft"].append(M.dice_soft(p, target))
            d["iou"].append(M.iou(p >= used_t, target))
            d["has"].append(bool(target.any()))
            d["prob"].append(p)
            d["target"].append(target)
        if "instance_prob" in maps.maps:
            truth = class_targets(ref, it.modality, [])[0][1]
            y, p = instance_pairs(maps, truth, str(it.path))
            inst_true += y
            inst_prob += p
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
