"""Out-of-distribution score: is an image unlike those a model version learnt from?

A model trained on phantoms drew confident masks on a real film mammogram and a real
chest CR, with no warning. The score here is built from input statistics, kept with
the model version (``ood.json`` in its folder): a few numbers per image (intensity
histogram after a robust p1-p99 normalisation, contrast, texture, noise, size,
aspect, dynamic range, padding), standardised by their mean and spread over the
study's training images, summed as a root-mean-square z. The cut is set on the
study's held-out images (val/test split; without one, each training image scored
by a fit that leaves it out): their largest score times :data:`MARGIN`, so no
held-out image of the training distribution is flagged.

Decided here: input statistics rather than the network's features, so the score is
the same for every method and needs no model pass; a per-feature (diagonal)
Gaussian, since a study has tens of images, too few for a full covariance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.io.atomic import atomic_write_text

FEATURES = tuple(
    [f"hist{i}" for i in range(8)]
    + ["mean", "std", "gradient", "noise", "log_pixels", "log_aspect", "log_range", "padding"]
)
VERSION = 1
MARGIN = 1.1
_FLOOR = 0.03  # smallest spread a feature is given (a constant feature on the phantoms)
_SIDE = 128  # features of texture are taken on a grid this size


def _plane(image) -> np.ndarray:
    """A 2D float array that stands for the image: coarsest level of a slide, the
    luminance of an RGB image, a few central slices of a volume side by side."""
    arr = image.data[-1] if image.multiscale else image.data
    arr = np.asarray(arr)
    if image.rgb:
        arr = arr[..., :3].mean(axis=-1)
    if arr.ndim == 3:
        z = arr.shape[0]
        picks = np.unique(np.linspace(z * 0.3, z * 0.7, num=min(z, 4)).astype(int))
        arr = np.concatenate([arr[k] for k in picks], axis=1)
    return arr.astype(np.float32)


def image_features(image) -> np.ndarray:
    """The :data:`FEATURES` of one :class:`~napari_wsseg.io.base.ImageData`."""
    raw = _plane(image)
    h, w = raw.shape
    step = max(1, max(h, w) // (4 * _SIDE))
    sample = raw[::step, ::step]
    lo, hi = np.percentile(sample, [1, 99])
    norm = np.clip((raw - lo) / (hi - lo + 1e-6), 0.0, 1.0)
    hist = np.histogram(norm[::step, ::step], bins=8, range=(0.0, 1.0))[0]
    hist = hist / max(1, hist.sum())
    small = norm[:: max(1, h // _SIDE), :: max(1, w // _SIDE)]
    gradient = float(np.abs(np.diff(small, axis=0)).mean() + np.abs(np.diff(small, axis=1)).mean())
    cy, cx = h // 2, w // 2
    crop = norm[max(0, cy - 64) : cy + 64, max(0, cx - 64) : cx + 64]
    lap = (
        4 * crop[1:-1, 1:-1] - crop[:-2, 1:-1] - crop[2:, 1:-1] - crop[1:-1, :-2] - crop[1:-1, 2:]
    )
    noise = float(np.median(np.abs(lap))) if lap.size else 0.0
    extra = [
        float(norm.mean()),
        float(norm.std()),
        gradient,
        noise,
        float(np.log10(h * w)),
        float(np.log(h / w)),
        float(np.log10(hi - lo + 1.0)),
        float(np.mean(sample <= sample.min())),
    ]
    return np.concatenate([hist, extra]).astype(np.float64)


def score(stats: dict[str, Any], features: np.ndarray) -> float:
    """Root-mean-square z of ``features`` against the fitted ``stats``."""
    z = (np.asarray(features) - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    return float(np.sqrt(np.mean(z**2)))


def fit(train: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """Mean and spread of the training features; the cut from the held-out ones."""
    train = np.atleast_2d(np.asarray(train, dtype=np.float64))
    if len(train) < 2:
        raise ValueError(f"out-of-distribution score: need 2+ training images, got {len(train)}")
    mean = train.mean(axis=0)
    std = np.maximum(train.std(axis=0, ddof=1), _FLOOR)
    stats: dict[str, Any] = {"version": VERSION, "features": list(FEATURES)}
    stats.update(mean=mean.tolist(), std=std.tolist(), n_fit=len(train), n_held=len(held))
    if len(held):
        scores = [score(stats, f) for f in np.atleast_2d(held)]
        stats["cut_from"] = "held-out split"
    else:  # no held-out split: each training image scored by a fit without it
        scores = [
            score(fit_stats(np.delete(train, i, axis=0)), train[i]) for i in range(len(train))
        ]
        stats["cut_from"] = "leave-one-out over the training images"
    stats["cut"] = float(max(scores) * MARGIN)
    return stats


def fit_stats(train: np.ndarray) -> dict[str, Any]:
    """Mean and spread only (no cut), for leave-one-out scoring."""
    std = train.std(axis=0, ddof=1) if len(train) > 1 else np.zeros(train.shape[1])
    return {"mean": train.mean(axis=0), "std": np.maximum(std, _FLOOR)}


def study_features(study_root: str | Path, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of a study's images of ``modality``: training split, and the rest."""
    from napari_wsseg.io import read_image
    from napari_wsseg.study.store import Study

    train, held = [], []
    with Study.open(study_root) as study:
        items = study.snapshot(modality=modality).items
    for item in items:
        feats = image_features(read_image(item.path, modality=modality))
        (train if item.split == "train" else held).append(feats)
    return np.array(train), np.array(held)


def path_of(version_dir: str | Path) -> Path:
    return Path(version_dir) / "ood.json"


def load(version_dir: str | Path) -> dict[str, Any] | None:
    """The version's stored statistics, or None (missing, or of an older layout)."""
    try:
        stats = json.loads(path_of(version_dir).read_text())
    except (OSError, ValueError):
        return None
    return stats if stats.get("version") == VERSION else None


def ensure(version_dir: str | Path, study_root: str | Path, modality: str) -> dict[str, Any]:
    """The version's statistics, fitted on the study and stored with it when missing."""
    stats = load(version_dir)
    if stats is None:
        stats = fit(*study_features(study_root, modality))
        stats["modality"] = modality
        atomic_write_text(path_of(version_dir), json.dumps(stats, indent=1))
    return stats


def check(stats: dict[str, Any], image) -> dict[str, Any]:
    """Score one image: ``score``, ``cut``, ``ood`` and a line for the user."""
    value = score(stats, image_features(image))
    ood = value > stats["cut"]
    line = (
        f"out of distribution: this image is unlike the {stats['n_fit']} images the model "
        f"learnt from (score {value:.1f} > cut {stats['cut']:.1f}); its maps and "
        "probabilities may be meaningless"
        if ood
        else f"in distribution (score {value:.1f} <= cut {stats['cut']:.1f})"
    )
    short = f"out of distribution (score {value:.1f} > cut {stats['cut']:.1f})" if ood else ""
    return {"score": value, "cut": stats["cut"], "ood": bool(ood), "message": line, "short": short}
