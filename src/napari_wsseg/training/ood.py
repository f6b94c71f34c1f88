"""Out-of-distribution score: is an image unlike those a model version learnt from?

A model trained on phantoms drew confident masks on a real film mammogram and a real
chest CR, with no warning. The score here is built from input statistics, kept with
the model version (``ood.json`` in its folder, written when the run registers it): a
few numbers per image (intensity histogram after a robust p1-p99 normalisation,
contrast, texture, noise, size, aspect, dynamic range, padding), standardised by their
mean and spread over the run's training images, summed as a root-mean-square z. The
cut is set on the run's held-out images (its validation split and the study's
held-out cases; without any, each training image scored by a fit that leaves it
out): their largest score times :data:`MARGIN`. A fine-tuned version learnt from its
parent's images too: its statistics pool the parent's with its own run's
(:func:`pool`), so a handful of corrected masks does not shrink them to those few.

Decided here: input statistics rather than the network's features, so the score is
the same for every method and needs no model pass; a per-feature (diagonal)
Gaussian, since a study has tens of images, too few for a full covariance.
``MARGIN`` is 3, not the 1.1 first chosen: with 6-30 held-out images the largest
held-out score underestimates the tail, and unseen phantoms of the shipped models'
own generator reached 1.2-1.9x it (at 1.1x, 1 to 4 of 20 unseen phantoms a modality
were flagged: false warnings on the sample study; at 3x none of 20), while the real
films the packages ship score 10-21x it (docs/benchmarks.md, *Out-of-distribution
warning*). Fewer than
:data:`MIN_FIT` training images give no check at all: their spread says nothing.
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
MARGIN = 3.0
MIN_FIT = 5  # fewer training images than this: no check (their spread means nothing)
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


def items_features(items, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of snapshot items (all of ``modality``): the training split, and the
    rest (validation and the study's held-out cases, which no job trains on)."""
    from napari_wsseg.io import read_image

    train, held = [], []
    for item in items:
        feats = image_features(read_image(item.path, modality=modality))
        (train if item.split == "train" else held).append(feats)
    return np.array(train), np.array(held)


def fit_items(
    items, modality: str, fitted_on: str, parent: str | Path | None = None
) -> dict[str, Any]:
    """The statistics of the images a run learnt from (``items``: its snapshot), pooled
    with those of its ``parent`` version when it has some of the same modality; the
    training images' paths are kept (``images``), so a child pools only those its
    parent did not learn from (a fine-tune on the same study counts each image once)."""
    items = [it for it in items if it.modality == modality]
    base = load(parent) if parent else None
    if base is not None and base.get("modality") == modality:
        seen = set(base.get("images", []))
        new = [it for it in items if not (it.split == "train" and str(it.path) in seen)]
        stats = pool(base, *items_features(new, modality))
        stats["images"] = sorted(seen | {str(it.path) for it in new if it.split == "train"})
        fitted_on += f", pooled with those of its parent {Path(parent).name}"
    else:
        stats = fit(*items_features(items, modality))
        stats["images"] = sorted(str(it.path) for it in items if it.split == "train")
    stats.update(modality=modality, fitted_on=fitted_on)
    return stats


def pool(parent: dict[str, Any], train: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """The parent's statistics (n, mean, spread) pooled with a run's training features,
    exactly as if fitted on both sets at once; the cut is the parent's or
    :data:`MARGIN` times the largest score of the run's images, whichever is higher
    (the parent's held-out scores are not kept)."""
    n1, m1 = int(parent["n_fit"]), np.asarray(parent["mean"], dtype=np.float64)
    s1 = np.asarray(parent["std"], dtype=np.float64)
    train = np.asarray(train, dtype=np.float64).reshape(-1, len(m1))
    n = n1 + len(train)
    mean = (n1 * m1 + train.sum(axis=0)) / n
    ss = (n1 - 1) * s1**2 + n1 * (m1 - mean) ** 2 + ((train - mean) ** 2).sum(axis=0)
    std = np.maximum(np.sqrt(ss / max(1, n - 1)), _FLOOR)
    stats: dict[str, Any] = {"version": VERSION, "features": list(FEATURES)}
    stats.update(mean=mean.tolist(), std=std.tolist(), n_fit=n, n_held=len(held))
    own = np.concatenate([train, np.asarray(held, dtype=np.float64).reshape(-1, len(m1))])
    scores = [score(stats, f) for f in own]
    stats["cut"] = float(max([float(parent["cut"]), *(MARGIN * v for v in scores)]))
    stats["cut_from"] = "the parent's cut, or its own images' largest score times the margin"
    return stats


def study_features(study_root: str | Path, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Features of a study's images of ``modality`` now: training split, and the rest."""
    from napari_wsseg.study.store import Study

    with Study.open(study_root) as study:
        items = study.snapshot(modality=modality).items
    return items_features(items, modality)


FILE = "ood.json"  # in the version's folder


def path_of(version_dir: str | Path) -> Path:
    return Path(version_dir) / FILE


def load(version_dir: str | Path) -> dict[str, Any] | None:
    """The version's stored statistics, or None: missing, of an older layout, or not
    what this module writes (a crafted or damaged file is refitted, never trusted)."""
    try:
        stats = json.loads(path_of(version_dir).read_text())
    except (OSError, ValueError):
        return None
    return stats if _valid(stats) else None


def _valid(stats: Any) -> bool:
    """``stats`` has this layout: version, per-feature mean and spread, counts, cut."""
    if not isinstance(stats, dict) or stats.get("version") != VERSION:
        return False
    try:
        mean = np.asarray(stats["mean"], dtype=np.float64)
        std = np.asarray(stats["std"], dtype=np.float64)
        counts = [stats["n_fit"], stats["n_held"]]
        cut = float(stats["cut"])
        images = stats.get("images", [])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        mean.shape == std.shape == (len(FEATURES),)
        and bool(np.isfinite(mean).all() and (std > 0).all() and np.isfinite(std).all())
        and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
        and counts[0] >= 2  # what fit() needs
        and counts[1] >= 0
        and bool(np.isfinite(cut))
        and cut > 0
        and isinstance(images, list)
        and all(isinstance(p, str) for p in images)
    )


def ensure(
    version_dir: str | Path, study_root: str | Path | None, modality: str
) -> dict[str, Any]:
    """The version's statistics; when it kept none (made before they were stored at
    training): a default model's shipped ones, else fitted on the snapshot its run
    trained on, else on the study's images now; stored with it.

    Not the study's images now when the run's snapshot is there: an image added to the
    study after the model was trained (a real film opened with File > Open, say) would
    join the statistics and never be flagged.
    """
    stats = load(version_dir)
    if stats is not None:
        return stats
    info = _info(version_dir)
    stats = _shipped(info) or _fit_on_run(info, modality)
    if stats is None and study_root is None:
        raise ValueError(f"{version_dir}: no out-of-distribution statistics kept with it")
    if stats is None:
        stats = fit(*study_features(study_root, modality))
        stats.update(modality=modality, fitted_on="the study's images at its first use")
    atomic_write_text(path_of(version_dir), json.dumps(stats, indent=1))
    return stats


def _info(version_dir: str | Path) -> dict[str, Any]:
    """The version's info.json as far as it reads ({} when it does not)."""
    try:
        info = json.loads((Path(version_dir) / "info.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _shipped(info: dict[str, Any]) -> dict[str, Any] | None:
    """A default model installed before its statistics were shipped: the shipped ones."""
    from napari_wsseg.training.defaults import SHIPPED

    if info.get("trained_by") != "scripts/train_default_models.py":
        return None
    return load(SHIPPED / str(info.get("method")))


def _fit_on_run(info: dict[str, Any], modality: str) -> dict[str, Any] | None:
    """Statistics of the snapshot the version's run trained on; None when its run
    folder or one of its images is gone (moved, deleted)."""
    from napari_wsseg.study.snapshot import Snapshot

    try:
        path = Path(info["run_dir"]) / "snapshot.json"
        parent = info.get("parent") if Path(str(info.get("parent"))).is_dir() else None
        items = Snapshot.load(path).items
        return fit_items(items, modality, f"the snapshot of its run {path}", parent)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check(stats: dict[str, Any], image) -> dict[str, Any]:
    """Score one image: ``score``, ``cut``, ``ood`` (None: no check) and a line for the
    user."""
    if int(stats["n_fit"]) < MIN_FIT:
        line = (
            f"no out-of-distribution check: the model learnt from {stats['n_fit']} image(s) "
            f"of this kind, too few to tell what is unlike them ({MIN_FIT} or more)"
        )
        return {"score": None, "cut": stats["cut"], "ood": None, "message": line, "short": ""}
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
