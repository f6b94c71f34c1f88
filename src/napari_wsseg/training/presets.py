"""Fine-tuning a model version, presets per method, and how long a job will take.

A job with a ``parent`` continues that version: it takes the parent's config (its
architecture), and only the training-length keys (:func:`training_keys`: steps and
learning rates) may change. A different architecture is a new model trained from
scratch: a job without a parent. Torch-free (the dock plans jobs with it).

Presets: ``quick`` fits a laptop CPU in minutes; ``paper`` is the paper's config (for a
GPU). Fine-tuning, ``quick`` reruns only the stages new masks change
(:data:`RETRAIN_STAGES`, docs/training.md says why per method) for a few steps;
``paper`` reruns them for the paper's step counts. From scratch, ``quick`` is the
shipped default's small architecture (``defaults.DEFAULT_TRAINING``) and ``paper`` the
method's own defaults.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from napari_wsseg.training.defaults import DEFAULT_TRAINING
from napari_wsseg.training.spec import JobSpec

PRESETS = ("quick", "paper")
_TRAINING_KEY = re.compile(r"(^|_)(steps|lr|epochs)$")

# The stages whose result depends on the expert masks, per method (the others learn from
# the weak labels only; a few new masks cannot change them). GLAM and Distill use no
# masks in any of the paper's stages: their quick retrain runs our ``masks`` stage (the
# last paper stage's weak losses plus BCE + soft Dice on the corrected masks, see
# methods/mask_loss.py and docs/training.md), so a correction counts there too.
RETRAIN_STAGES: dict[str, tuple[str, ...]] = {
    "chexseg": ("segmentation",),
    "manifold": ("unet",),
    "iagnet": ("iagnet",),
    "glam": ("masks",),
    "distill": ("masks",),
}

# Quick fine-tune: steps per rerun stage (tens of seconds on 2 CPU cores for the 2D
# methods with the shipped architectures; see benchmarks/bench_loop.py).
QUICK_STEPS: dict[str, dict[str, int]] = {
    "chexseg": {"segmentation": 60},
    "manifold": {"unet": 60},
    "iagnet": {"iagnet": 150},
    "glam": {"masks": 40},
    "distill": {"masks": 80},
}

# Quick fine-tune learning rates that differ from the parent's (a fresh optimiser on a
# trained model). IAG-Net, one round on a study whose only corrected case is lesion-free
# (bench_loop seed 0): the parent's lr 1e-3 took held-out Dice from 0.89 to 0.005 in 150
# steps and to 0.006 in 40; 1e-4 for 40 steps gave 0.43; 1e-5 for 150 steps 0.90 (the
# weak labels alone re-learn the attention; see docs/training.md).
QUICK_LR: dict[str, dict[str, float]] = {"iagnet": {"lr": 1e-5}}

# Methods whose quick fine-tune runs the parent guard (training/guard.py). IAG-Net and
# Distill: their fine-tunes lost held-out Dice from one round to the next in
# bench_loop (IAG-Net to ~0 with a lesion-free correction, Distill 0.92 -> 0.57 in one
# round). Not manifold: its first fine-tunes dip before the masks pay off (seed 1:
# 0.32 -> 0.26 -> ... -> 0.66), and with the guard on it kept v001 in every round.
GUARD_METHODS = frozenset({"iagnet", "distill"})

# Step count config key of each stage (the stage's own default length).
STAGE_KEYS: dict[str, dict[str, str]] = {
    "chexseg": {"classifier": "classifier_steps", "segmentation": "seg_steps",
                "teacher": "seg_steps", "student": "seg_steps"},
    "manifold": {"metric": "metric_steps", "metric_dcml": "metric_steps",
                 "metric_full": "metric_steps", "classifier": "metric_steps",
                 "unet": "unet_steps"},
    "iagnet": {"iagnet": "steps"},
    "glam": {"global": "global_steps", "local": "local_steps", "joint": "joint_steps",
             "masks": "mask_steps"},
    "distill": {"teacher": "teacher_steps", "student": "student_steps", "masks": "mask_steps"},
}  # fmt: skip


# The ``masks`` stage (ours, 0 steps by default) runs, under the paper preset, as long
# as the paper stage whose losses it extends.
MASK_STAGE_LENGTH = {"glam": "joint_steps", "distill": "student_steps"}


def training_keys(config: dict[str, Any]) -> list[str]:
    """Config keys a fine-tune may change: step counts and learning rates."""
    return [k for k in config if _TRAINING_KEY.search(k)]


def read_version(version_dir: str | Path) -> dict[str, Any]:
    """A version's ``info.json``; errors name the file."""
    path = Path(version_dir) / "info.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not a model version (no info.json)") from None
    except ValueError as err:
        raise ValueError(f"{path}: unreadable info.json ({err})") from None


def resolve_parent_path(parent: str, study: str, method: str) -> str:
    """``--parent``: a version folder, a version name (``v001``) of the study's method,
    or ``current`` (the promoted version)."""
    if not parent:
        return ""
    if Path(parent).is_dir():
        return str(Path(parent).resolve())
    if not study:
        raise FileNotFoundError(f"--parent {parent}: no such folder (and no study to look in)")
    from napari_wsseg.training.promotion import current_version

    mdir = Path(study) / "models" / method
    name = current_version(mdir) if parent == "current" else parent
    if not name or not (mdir / name).is_dir():
        raise FileNotFoundError(f"--parent {parent}: no model version {name or parent} in {mdir}")
    return str((mdir / name).resolve())


def apply_parent(spec: JobSpec) -> JobSpec:
    """Put the parent's config under the job's overrides; refuse an architecture change.

    Idempotent (a resumed job passes through again with the merged config).
    """
    if not spec.parent:
        return spec
    spec.parent = resolve_parent_path(spec.parent, spec.study, spec.method)
    info = read_version(spec.parent)
    if info.get("method") not in (None, spec.method):
        raise ValueError(
            f"--parent {spec.parent}: a {info.get('method')} version cannot parent a "
            f"{spec.method} job"
        )
    base = dict(info.get("config", {}))
    allowed = set(training_keys(base))
    changed = sorted(
        k for k, v in spec.config.items() if k not in allowed and _norm(v) != _norm(base.get(k))
    )
    if changed:
        raise ValueError(
            f"--parent {spec.parent}: fine-tuning keeps the parent's architecture; "
            f"{', '.join(changed)} cannot change (only {', '.join(sorted(allowed))}). "
            "Train a new model from scratch (no --parent) to change them."
        )
    spec.config = {**base, **{k: v for k, v in spec.config.items() if k in allowed}}
    return spec


def _norm(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_norm(x) for x in v]
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def stage_names(method: str, config: dict[str, Any]) -> list[str]:
    """The method's stages under ``config`` (imports the method: torch)."""
    from napari_wsseg.methods import get_method
    from napari_wsseg.training.configs import make_config

    cls = get_method(method)
    return [s.name for s in cls(make_config(cls.Config, config)).stages()]


def stage_plan(
    method: str, all_stages: list[str], preset: str, fine_tune: bool,
    run: list[str] | None = None, config: dict[str, Any] | None = None,
) -> dict[str, int]:  # fmt: skip
    """Steps per stage: 0 for stages not rerun; the preset's length for the others."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    if run is None:
        run = list(RETRAIN_STAGES.get(method, all_stages)) if fine_tune else list(all_stages)
    unknown = sorted(set(run) - set(all_stages))
    if unknown:
        raise ValueError(f"{method}: no stage {', '.join(unknown)}; stages: {all_stages}")
    config = config or {}
    plan = {}
    for name in all_stages:
        if name not in run:
            plan[name] = 0
        elif fine_tune and preset == "quick":
            plan[name] = QUICK_STEPS.get(method, {}).get(name, 50)
        else:
            key = STAGE_KEYS.get(method, {}).get(name)
            if name == "masks" and not int(config.get(key, 0) or 0):
                key = MASK_STAGE_LENGTH.get(method, key)  # as long as the stage it extends
            plan[name] = int(config[key]) if key in config else -1  # -1: the method's own
    return {k: v for k, v in plan.items() if v >= 0}


def scratch_config(method: str, preset: str) -> tuple[dict[str, str], int | None]:
    """(``--set`` values, steps) of a from-scratch job with ``preset``."""
    if preset == "paper":
        return {}, None
    steps, sets = DEFAULT_TRAINING.get(method, (None, {}))
    sets = dict(sets)
    if steps:  # one length for every stage: set it through the stages' own keys
        sets.update({key: str(steps) for key in set(STAGE_KEYS.get(method, {}).values())})
    return sets, None


def paper_defaults(method: str) -> dict[str, Any]:
    """The method's Config defaults (the paper's)."""
    from napari_wsseg.methods import get_method
    from napari_wsseg.methods.base import config_fields

    return config_fields(get_method(method).Config)


def fine_tune_spec(
    parent_dir: str | Path, out: str | Path, study: str, preset: str = "quick",
    stages: list[str] | None = None, overrides: dict[str, Any] | None = None, **kw: Any,
) -> JobSpec:  # fmt: skip
    """A job continuing ``parent_dir`` with ``preset`` on the rerun ``stages``."""
    info = read_version(parent_dir)
    method = info["method"]
    config = dict(info.get("config", {}))
    if preset == "paper":
        paper = paper_defaults(method)
        config.update({k: paper[k] for k in training_keys(config) if k in paper})
    else:
        config.update(QUICK_LR.get(method, {}))
    config.update(overrides or {})
    plan = stage_plan(method, stage_names(method, config), preset, True, stages, config)
    kw.setdefault("guard", preset == "quick" and method in GUARD_METHODS)
    spec = JobSpec(
        method=method, out=str(out), study=str(study), parent=str(parent_dir),
        config={k: v for k, v in config.items() if k in training_keys(config)},
        stage_steps=plan, **kw,
    )  # fmt: skip
    return apply_parent(spec)


# --- how long -----------------------------------------------------------------------
def step_seconds(version_dir: str | Path) -> dict[str, float]:
    """Measured seconds a step per stage of a version (``timing.json``), else the
    average of its recorded ``train_seconds`` over its steps (the shipped defaults)."""
    vdir = Path(version_dir)
    try:
        timing = json.loads((vdir / "timing.json").read_text())
        return {k: float(v) for k, v in timing.get("step_seconds", {}).items()}
    except (OSError, ValueError):
        pass
    info = read_version(vdir)
    secs = info.get("train_seconds")
    if not isinstance(secs, int | float):
        return {}
    cfg = info.get("config", {})
    keys = set(STAGE_KEYS.get(info.get("method", ""), {}).values())
    total = sum(int(cfg[k]) for k in keys if isinstance(cfg.get(k), int))
    return {"*": float(secs) / total} if total else {}


def overhead_seconds(version_dir: str | Path) -> float | None:
    """Seconds a version's job spent outside its steps (data set-up, scoring), measured."""
    try:
        timing = json.loads((Path(version_dir) / "timing.json").read_text())
    except (OSError, ValueError):
        return None
    v = timing.get("overhead_s")
    return float(v) if isinstance(v, int | float) else None


def estimate_seconds(per_step: dict[str, float], plan: dict[str, int]) -> float | None:
    """Seconds for ``plan`` (steps per stage) at ``per_step`` (by stage, ``*`` = any)."""
    if not per_step:
        return None
    fallback = per_step.get("*", sum(per_step.values()) / len(per_step))
    return float(sum(n * per_step.get(s, fallback) for s, n in plan.items()))


def paper_size(method: str, config: dict[str, Any]) -> bool:
    """Whether ``config`` keeps the paper's architecture (a GPU-sized model): every key
    the shipped small default changes still has the paper's value."""
    from napari_wsseg.methods import get_method
    from napari_wsseg.training.configs import config_to_json, make_config

    cls = get_method(method)
    mine = config_to_json(make_config(cls.Config, config))
    paper = config_to_json(cls.Config())
    small = DEFAULT_TRAINING.get(method, (None, {}))[1]
    arch = [k for k in small if not _TRAINING_KEY.search(k)]
    return bool(arch) and all(mine[k] == paper[k] for k in arch)
