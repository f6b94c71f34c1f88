"""Which image to annotate next: rank images without an expert mask by uncertainty.

Score of one image, from its :class:`Maps` only (works for every method):

- p: the mask-probability map (``maps.mask``; the first map when there is none),
  max over the class axis for multi-class maps;
- salient region R: pixels where p or any other map of the same kind is > 0.1;
- entropy: mean over R of the binary entropy H(p) in bits (1 = a coin flip);
- disagreement: mean over R and over the other maps m of |m - p|: where
  attention and mask disagree, an expert mask settles it. Maps are placed on p's
  pixels by their :class:`Grid` with evaluate's ``resize_to`` (a map without one
  spans the whole image), so a coarse slide grid lines up with a fine map;
- ``Maps.valid``: pixels where a map holds no prediction (slide tiles the tiler
  dropped as background) are left out of R (for p) or of that map's disagreement.

``score = entropy + disagreement`` (each in [0, 1]); an image with an empty
salient region scores 0 (the model sees nothing to segment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.evaluation.evaluate import resize_to
from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.methods.base import Grid, Maps

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


def _placement(maps: Maps, name: str, shape: tuple[int, ...], image_shape) -> Grid | None:
    """The map's Grid; a map without one covers the whole image (as in evaluate).

    Without the image's shape a gridless map's extent is unknown: None (stretch).
    """
    if name in maps.grids:
        return maps.grids[name]
    if image_shape is None:
        return None
    return Grid.downsampled(tuple(i / s for i, s in zip(image_shape, shape)))


def _relative(m: Grid, p: Grid) -> Grid:
    """Grid of map ``m`` in the pixels of map ``p`` (both placed on the same image).

    p's pixel j is image pixel ``p.t + j p.s``, which reads m at ``(p.t + j p.s - m.t) / m.s``
    = ``(j - (m.t - p.t) / p.s) / (m.s / p.s)``: the Grid ``resize_to`` takes.
    """
    return Grid(
        tuple(ms / ps for ms, ps in zip(m.scale, p.scale)),
        tuple((mt - pt) / ps for mt, pt, ps in zip(m.translate, p.translate, p.scale)),
    )


def _valid(maps: Maps, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``Maps.valid[name]`` (True everywhere when absent), checked against the map's shape."""
    if name not in maps.valid:
        return np.ones(shape, dtype=bool)
    valid = np.asarray(maps.valid[name], dtype=bool)
    if valid.shape != shape:
        raise ValueError(f"valid mask of map {name!r} has shape {valid.shape}, the map {shape}")
    return valid


def _on_p(
    maps: Maps, name: str, main: str, p_shape: tuple[int, ...], image_shape
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``name`` and where it holds a prediction, resampled onto p's pixels.

    Placement is evaluate's :func:`resize_to` through the maps' Grids: pixels of p
    outside the other map's extent, or mostly on its invalid tiles, are not valid for it.
    """
    m = _spatial(maps, name)
    valid = _valid(maps, name, m.shape).astype(np.float32)
    gm = _placement(maps, name, m.shape, image_shape)
    gp = _placement(maps, main, p_shape, image_shape)
    if gm is None and gp is None:
        grid = None  # neither placed and no image shape: both span the whole image
    else:
        ndim = len(p_shape)
        grid = _relative(gm or Grid.identity(ndim), gp or Grid.identity(ndim))
    return resize_to(m, p_shape, grid), resize_to(valid, p_shape, grid) >= 0.5


def uncertainty_score(
    maps: Maps, salient: float = SALIENT, image_shape: tuple[int, ...] | None = None
) -> dict[str, float]:
    """Entropy + disagreement of one image's maps (see the module notes).

    Other maps are placed on p's pixels through their Grids (``image_shape``, the
    image's spatial shape, places maps that have none, stretched over the image as
    :mod:`evaluate` does). Pixels outside ``Maps.valid`` (tiles the tiler dropped as
    background) are neither salient nor uncertain.
    """
    zero = {"score": 0.0, "entropy": 0.0, "disagreement": 0.0, "salient_fraction": 0.0}
    if not maps.maps:
        return zero
    main = maps.mask if maps.mask in maps.maps else next(iter(maps.maps))
    p = _spatial(maps, main)
    p_valid = _valid(maps, main, p.shape)
    others = [
        _on_p(maps, n, main, p.shape, image_shape)
        for n in maps.maps
        if n != main and _spatial(maps, n).ndim == p.ndim
    ]
    region = p > salient
    for m, ok in others:
        region |= (m > salient) & ok
    region &= p_valid
    if not region.any():
        return zero
    ent = float(binary_entropy(p[region]).mean())
    gaps = [np.abs(m[r] - p[r]).mean() for m, ok in others if (r := region & ok).any()]
    dis = float(np.mean(gaps)) if gaps else 0.0
    return {
        "score": ent + dis,
        "entropy": ent,
        "disagreement": dis,
        "salient_fraction": float(region.sum() / max(int(p_valid.sum()), 1)),
    }


CACHE = "suggest_cache.json"


def _score_item(method: Any, model: Any, it: Any) -> dict[str, Any]:
    from napari_wsseg.io import read_image

    image = read_image(it.path, modality=it.modality)
    score = uncertainty_score(method.predict(model, image), image_shape=image.spatial_shape)
    return {"image_id": it.image_id, "path": it.path, **score}


def _rank(rows: list[dict], n: int | None) -> list[dict]:
    rows = sorted(rows, key=lambda r: (-r["score"], r["image_id"]))
    return rows if n is None else rows[:n]


def rank_items(method: Any, model: Any, items: list, n: int | None = None) -> list[dict]:
    """Items without an expert mask, most useful to annotate first."""
    return _rank([_score_item(method, model, it) for it in items if not it.mask], n)


def read_cache(version_dir: str | Path) -> dict[str, dict]:
    """Cached scores of a version by image path (images in a study never change)."""
    try:
        data = json.loads((Path(version_dir) / CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_rank(
    version_dir: str | Path, items: list, n: int | None = None, loaded: tuple | None = None,
    device: str = "cpu",
) -> list[dict]:  # fmt: skip
    """:func:`rank_items` reusing the version's cached scores; only images not scored
    yet are predicted (the model is loaded only then, or taken from ``loaded``)."""
    cache = read_cache(version_dir)
    todo = [it for it in items if not it.mask and it.path not in cache]
    if todo:
        import torch

        if loaded is None:
            from napari_wsseg.training.registry import load_model

            loaded = load_model(version_dir, device=device)
        with torch.inference_mode():
            for it in todo:
                cache[it.path] = _score_item(*loaded, it)
        atomic_write_text(Path(version_dir) / CACHE, json.dumps(cache, indent=1))
    rows = [{**cache[it.path], "image_id": it.image_id} for it in items if not it.mask]
    return _rank(rows, n)


def version_modality(version_dir: str | Path) -> str:
    """The modality of a version's method (its class attribute; no weights loaded)."""
    from napari_wsseg.methods import METHOD_MODALITY, get_method

    name = json.loads((Path(version_dir) / "info.json").read_text())["method"]
    return METHOD_MODALITY.get(name) or get_method(name).modality


def candidates(study: str | Path, modality: str) -> list:
    """The study's images of ``modality`` a user could annotate next: no accepted
    mask, and not in the held-out set (those are for scoring only)."""
    from napari_wsseg.study.heldout import held_out_ids
    from napari_wsseg.study.store import Study

    with Study.open(study) as st:
        items = st.snapshot(modality=modality).items
        held = set(held_out_ids(st, modality))
    return [it for it in items if not it.mask and it.image_id not in held]


def suggest(
    version_dir: str | Path, study: str | Path, n: int = 5, device: str = "cpu"
) -> list[dict]:
    """Rank the study's unannotated images of the model's modality (cached per version:
    a finished job has usually scored them already, see ``heldout.score_after_training``)."""
    items = candidates(study, version_modality(version_dir))
    return cached_rank(version_dir, items, n, device=device)
