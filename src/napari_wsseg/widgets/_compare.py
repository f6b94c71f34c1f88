"""Explain's comparison of a new model version with the current one, without Qt:
held-out scores side by side, promote, keep the current one, revert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_wsseg.training import promotion

ROWS = (("dice", "held-out Dice"), ("miou", "held-out mIoU"), ("auc", "held-out AUC"))


def method_dir(entry: dict[str, Any]) -> Path:
    return Path(entry["path"]).parent


def scores_of(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The study's held-out summary of a version (None until scored)."""
    return (entry.get("held_out") or {}).get("summary")


def score(entry: dict[str, Any], study: str) -> dict[str, Any]:
    """Score a version on the study's held-out set (cached); runs in a worker thread."""
    from napari_wsseg.evaluation.heldout import score_version

    return score_version(entry["path"], study)


JOB_SCORING_S = 300.0


def reload_scores(entry: dict[str, Any]) -> bool:
    """Read ``held_out.json`` again into ``entry``: the job writes it about a second
    after the weights, so a version listed in between has none yet. True if found."""
    import json

    try:
        data = json.loads((Path(entry["path"]) / "held_out.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        return False
    entry["held_out"] = data
    return True


def needs_scoring(entry: dict[str, Any]) -> bool:
    """Whether the dock should score a version itself: the current one, or a version
    whose job had time to score it and did not (weights older than JOB_SCORING_S)."""
    import time

    if entry.get("current"):
        return True
    try:
        age = time.time() - (Path(entry["path"]) / "weights.pt").stat().st_mtime
    except OSError:
        return False
    return age > JOB_SCORING_S


def rows(current: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, current, new) text rows; a better new value is marked."""
    a, b = scores_of(current) or {}, scores_of(new) or {}
    out = []
    for key, name in ROWS:
        va, vb = a.get(key), b.get(key)
        if va is None and vb is None:
            continue
        mark = " ▲" if va is not None and vb is not None and vb > va else ""
        out.append((name, _fmt(va), _fmt(vb) + mark))
    out.append(("held-out images", str(a.get("n_images", "?")), str(b.get("n_images", "?"))))
    info_a, info_b = current.get("info", {}), new.get("info", {})
    out.append(
        ("expert masks trained on", str(info_a.get("n_expert_masks", "?")),
         str(info_b.get("n_expert_masks", "?")))
    )  # fmt: skip
    parent = Path(info_b["parent"]).name if info_b.get("parent") else "none"
    out.append(("parent", "-", parent))
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else "…"


def offered(entries: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    """The version to offer beside the current one (newer, neither promoted nor declined)."""
    mine = [e for e in entries if e["method"] == method]
    if not mine:
        return None
    name = promotion.offered_version(method_dir(mine[0]))
    return next((e for e in mine if e["version"] == name), None)


def promote(entry: dict[str, Any]) -> None:
    promotion.promote(method_dir(entry), entry["version"])


def keep_current(new: dict[str, Any]) -> None:
    promotion.decline(method_dir(new), new["version"])


def previous(entry: dict[str, Any]) -> str | None:
    """The version "revert" would go back to, for the current ``entry``'s method."""
    return promotion.previous_version(method_dir(entry))


def revert(entry: dict[str, Any]) -> str:
    return promotion.revert(method_dir(entry))["version"]


def auto_promote(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Promote ``new`` if its held-out Dice is not worse than ``current``'s."""
    a, b = scores_of(current) or {}, scores_of(new) or {}
    return promotion.auto_promote(method_dir(new), new["version"], b.get("dice"), a.get("dice"))
