"""Segmentation and classification metrics, with their empty-mask conventions.

Conventions (also in docs/training.md):

- Dice and IoU: 1.0 when prediction and ground truth are both empty, 0.0 when only
  one of them is. mIoU averages over the classes present in the prediction or the
  ground truth (a class absent from both is skipped; nothing present -> 1.0).
- Soft Dice follows GLAM Appendix E: ``2*sum(S*G) / (sum(S^2) + sum(G^2))`` on the
  saliency map S in [0, 1] (G binary, so G^2 = G); ``squared=False`` gives the
  common ``2*sum(S*G) / (sum(S) + sum(G))``. Both empty -> 1.0.
- PxAP (Choe et al. 2020; GLAM App. E) is the step-wise area under the pixel
  precision-recall curve, ``sum_l Prec(t_l) (Rec(t_l) - Rec(t_{l-1}))`` over every
  distinct score as threshold (scikit-learn's ``average_precision_score``). It is
  undefined (NaN) for an image whose ground truth is empty: image-level PxAP averages
  over the images that have a lesion; dataset-level PxAP pools all pixels of all
  images (empty ones too, they add false positives) and is NaN without any lesion.
- AUC / AUROC: NaN when only one class is present. Sensitivity is NaN without
  positives, specificity NaN without negatives. Thresholds are ``score >= t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {target.shape}")
    return pred, target


def dice_hard(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Dice of ``prob >= threshold`` against the binary ``target`` (both empty -> 1)."""
    prob, target = _pair(prob, target)
    p = prob >= threshold if prob.dtype != bool else prob
    g = target.astype(bool)
    denom = int(p.sum()) + int(g.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(p, g).sum()) / denom


def dice_soft(saliency: np.ndarray, target: np.ndarray, squared: bool = True) -> float:
    """Soft Dice of a saliency map in [0, 1] (GLAM App. E; see the module notes)."""
    s, g = _pair(saliency, target)
    s = s.astype(np.float64)
    g = g.astype(np.float64)
    denom = float((s * s).sum() + (g * g).sum()) if squared else float(s.sum() + g.sum())
    return 1.0 if denom == 0 else 2.0 * float((s * g).sum()) / denom


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two binary masks (both empty -> 1)."""
    p, g = _pair(pred, target)
    p, g = p.astype(bool), g.astype(bool)
    union = int(np.logical_or(p, g).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, g).sum()) / union


def miou(pred: np.ndarray, target: np.ndarray, classes: Sequence[int]) -> float:
    """Mean IoU over ``classes`` of two label images (classes absent from both skipped)."""
    p, g = _pair(pred, target)
    vals = [iou(p == c, g == c) for c in classes if (p == c).any() or (g == c).any()]
    return float(np.mean(vals)) if vals else 1.0


def pxap(scores: np.ndarray, target: np.ndarray) -> float:
    """Pixel average precision of one image (NaN when its ground truth is empty)."""
    from sklearn.metrics import average_precision_score

    s, g = _pair(scores, target)
    g = g.astype(bool).ravel()
    if not g.any():
        return math.nan
    return float(average_precision_score(g, s.astype(np.float64).ravel()))


def pxap_image_level(
    scores: Sequence[np.ndarray], targets: Sequence[np.ndarray]
) -> tuple[float, float, int]:
    """(mean, std, n) of per-image PxAP over the images with a non-empty ground truth."""
    vals = [v for v in (pxap(s, t) for s, t in zip(scores, targets)) if not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


def pxap_dataset_level(scores: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """PxAP of all pixels of all images pooled into one precision-recall curve."""
    if not scores:
        return math.nan
    pairs = [_pair(s, t) for s, t in zip(scores, targets)]
    s = np.concatenate([p[0].astype(np.float64).ravel() for p in pairs])
    g = np.concatenate([p[1].astype(bool).ravel() for p in pairs])
    return pxap(s, g)


def auc(y_true: Sequence[float], y_score: Sequence[float]) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(int)
    if len(np.unique(y)) < 2:
        return math.nan
    return float(roc_auc_score(y, np.asarray(y_score, dtype=np.float64)))


def sensitivity_specificity(
    y_true: Sequence[float], y_score: Sequence[float], threshold: float = 0.5
) -> tuple[float, float]:
    """(TP/(TP+FN), TN/(TN+FP)) of ``score >= threshold``; NaN where undefined."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_score, dtype=np.float64) >= threshold
    pos, neg = int(y.sum()), int((~y).sum())
    sens = int((p & y).sum()) / pos if pos else math.nan
    spec = int((~p & ~y).sum()) / neg if neg else math.nan
    return sens, spec


def instance_metrics(
    y_true: Sequence[float], y_prob: Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """Instance (patch/tile) accuracy, F1 and AUROC at ``prob >= threshold``."""
    from sklearn.metrics import accuracy_score, f1_score

    y = np.asarray(y_true).astype(int)
    p = (np.asarray(y_prob, dtype=np.float64) >= threshold).astype(int)
    if y.size == 0:
        return {"accuracy": math.nan, "f1": math.nan, "auroc": math.nan}
    return {
        "accuracy": float(accuracy_score(y, p)),
        "f1": float(f1_score(y, p, zero_division=0.0)),
        "auroc": auc(y, y_prob),
    }


def classification_metrics(
    y_true: Sequence[float], y_score: Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """AUC plus sensitivity and specificity at ``threshold`` for one label."""
    sens, spec = sensitivity_specificity(y_true, y_score, threshold)
    return {
        "auc": auc(y_true, y_score),
        "sensitivity": sens,
        "specificity": spec,
        "n": int(len(y_true)),
        "n_pos": int(np.sum(np.asarray(y_true) > 0)),
    }
