"""Held-out scores of model versions: what the user compares before promoting one.

Every new version is scored on the study's held-out set (``study.heldout``: cases no
job trains on) with :func:`evaluate.evaluate_items` (the method's mask metrics against
the reference or expert mask, and AUC of the case-level probabilities against the
weak labels). Scores go to ``<version>/held_out.json`` with the held-out ids they were
computed on; a changed held-out set makes them stale and they are computed again.
The shipped defaults also carry the scores on their own held-out study
(``info.json: held_out_scores``), shown when the study's are not computed yet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.io.atomic import atomic_write_text

HELD_OUT_FILE = "held_out.json"


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of an evaluation: mean hard Dice over mask classes, mIoU, mean
    AUC over labels that have both classes, and the number of images."""
    seg = result.get("segmentation", {}) or {}
    dice = [v.get("dice_hard") for v in seg.values()]
    dice = [float(d) for d in dice if isinstance(d, int | float) and math.isfinite(d)]
    aucs = [v.get("auc") for v in (result.get("classification", {}) or {}).values()]
    aucs = [float(a) for a in aucs if isinstance(a, int | float) and math.isfinite(a)]
    miou = result.get("miou")
    return {
        "dice": float(np.mean(dice)) if dice else None,
        "miou": float(miou) if isinstance(miou, int | float) and math.isfinite(miou) else None,
        "auc": float(np.mean(aucs)) if aucs else None,
        "n_images": int(result.get("n_images", 0)),
    }


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def score_items(method: Any, model: Any, items: list) -> dict[str, Any]:
    """Evaluate ``model`` on held-out ``items``; returns ids, summary and full metrics."""
    from napari_wsseg.evaluation.evaluate import evaluate_items

    result = _clean(evaluate_items(method, model, items)) if items else {"n_images": 0}
    return {
        "ids": sorted(int(it.image_id) for it in items),
        "summary": summary(result),
        "metrics": result,
    }


def write_scores(version_dir: str | Path, scores: dict[str, Any]) -> Path:
    return atomic_write_text(Path(version_dir) / HELD_OUT_FILE, json.dumps(scores, indent=1))


def read_scores(version_dir: str | Path, ids: list[int] | None = None) -> dict[str, Any] | None:
    """Stored held-out scores; None when absent or computed on other ids than ``ids``."""
    try:
        data = json.loads((Path(version_dir) / HELD_OUT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if ids is not None and sorted(data.get("ids", [])) != sorted(ids):
        return None
    return data


def shipped_summary(info: dict[str, Any]) -> dict[str, Any] | None:
    """Summary of the held-out scores a shipped default carries in its info.json."""
    scores = info.get("held_out_scores")
    return summary(scores) if isinstance(scores, dict) else None


def held_out_items(study: str | Path, modality: str) -> list:
    """Snapshot items of the study's held-out cases of ``modality``."""
    from napari_wsseg.study.heldout import held_out_ids
    from napari_wsseg.study.store import Study

    with Study.open(study) as st:
        ids = set(held_out_ids(st, modality))
        items = st.snapshot(modality=modality).items
    return [it for it in items if it.image_id in ids]


def score_version(
    version_dir: str | Path, study: str | Path, device: str = "cpu", force: bool = False
) -> dict[str, Any]:
    """Held-out scores of a version on the study (cached in ``held_out.json``)."""
    import torch

    from napari_wsseg.evaluation.suggest import version_modality
    from napari_wsseg.training.registry import load_model

    items = held_out_items(study, version_modality(version_dir))
    ids = [it.image_id for it in items]
    cached = None if force else read_scores(version_dir, ids)
    if cached is not None:
        return cached
    method, model = load_model(version_dir, device=device)
    with torch.inference_mode():
        scores = score_items(method, model, items)
    write_scores(version_dir, scores)
    return scores


def score_after_training(spec: Any, version_dir: Path, method: Any, model: Any, items: list):
    """``wsseg train``'s hook: score the new version on the run's held-out items, and
    auto-promote it when the job asks and it is not worse than the current one."""
    from napari_wsseg.training.snapshots import HELD_OUT

    held = [it for it in items if it.split == HELD_OUT]
    scores = score_items(method, model, held)
    write_scores(version_dir, scores)
    if getattr(spec, "parent", "") and spec.study and Path(spec.parent).is_dir():
        # the parent on the same cases (cached per id set), so `wsseg models` and the
        # dock compare like with like: a shipped default's own score is of other images
        score_version(spec.parent, spec.study)
    if getattr(spec, "suggest_cache", True):
        # score the unannotated cases now, while the model is loaded: Suggest then
        # reads a file instead of predicting every case on the viewer's machine
        from napari_wsseg.evaluation.suggest import cached_rank

        pool = [it for it in items if it.split != HELD_OUT and not it.mask]
        cached_rank(version_dir, pool, loaded=(method, model))
    if getattr(spec, "auto_promote", False) and spec.study:
        from napari_wsseg.training.promotion import auto_promote, current_version

        mdir = Path(version_dir).parent
        cur = current_version(mdir)
        old = None
        if cur and cur != Path(version_dir).name:
            old = score_version(mdir / cur, spec.study)["summary"].get("dice")
        scores["promoted"] = auto_promote(
            mdir, Path(version_dir).name, scores["summary"].get("dice"), old
        )
    return scores
