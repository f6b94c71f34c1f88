"""Which image to annotate next: rank images without an expert mask by uncertainty.

Score of one image, from its :class:`Maps` only (works for every method):

- p: the mask-probability map (``maps.mask``; the first map when there is none),
  max over the class axis for multi-class maps;
- salient region R: pixels where p or any other map of the same kind is > 0.1;
- entropy: mean over R of the binary entropy H(p) in bits (1 = a coin flip);
- disagreement: mean over R and over the other maps m (resized onto p's grid)
  of |m - p|: where attention and mask disagree, an expert mask settles it.

``score = entropy + disagreement`` (each in [0, 1]); an image with an empty
salient region scores 0 (the model sees nothing to segment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.evaluation.evaluate import resize_to
from napari_wsseg.methods.base import Maps

SALIENT = 0.1


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) in bits, with 0 log 0 = 0."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def _spatial(maps: Maps, name: str) -> np.ndarray:
    arr = np.asarray(maps.maps[name], dtype=np.float32)
    return arr.max(0) if maps.classes.get(name) else arr


def uncertainty_score(maps: Maps, salient: float = SALIENT) -> dict[str, float]:
    """Entropy + disagreement of one image's maps (see the module notes)."""
    if not maps.maps:
        return {"score": 0.0, "entropy": 0.0, "disagreement": 0.0, "salient_fraction": 0.0}
    main = maps.mask if maps.mask in maps.maps else next(iter(maps.maps))
    p = _spatial(maps, main)
    others = [
        resize_to(_spatial(maps, n), p.shape)
        for n in maps.maps
        if n != main and _spatial(maps, n).ndim == p.ndim
    ]
    region = p > salient
    for m in others:
        region |= m > salient
    if not region.any():
        return {"score": 0.0, "entropy": 0.0, "disagreement": 0.0, "salient_fraction": 0.0}
    ent = float(binary_entropy(p[region]).mean())
    dis = float(np.mean([np.abs(m[region] - p[region]).mean() for m in others])) if others else 0.0
    return {
        "score": ent + dis,
        "entropy": ent,
        "disagreement": dis,
        "salient_fraction": float(region.mean()),
    }


def rank_items(method: Any, model: Any, items: list, n: int | None = None) -> list[dict]:
    """Items without an expert mask, most useful to annotate first."""
    from napari_wsseg.io import read_image

    rows = []
    for it in items:
        if it.mask:
            continue
        maps = method.predict(model, read_image(it.path, modality=it.modality))
        rows.append({"image_id": it.image_id, "path": it.path, **uncertainty_score(maps)})
    rows.sort(key=lambda r: (-r["score"], r["image_id"]))
    return rows if n is None else rows[:n]


def suggest(
    version_dir: str | Path, study: str | Path, n: int = 5, device: str = "cpu"
) -> list[dict]:
    """Rank the study's unannotated images of the model's modality."""
    import torch

    from napari_wsseg.study.store import Study
    from napari_wsseg.training.registry import load_model

    method, model = load_model(version_dir, device=device)
    with Study.open(study) as st:
        items = st.snapshot(modality=method.modality).items
    with torch.inference_mode():
        return rank_items(method, model, items, n)
