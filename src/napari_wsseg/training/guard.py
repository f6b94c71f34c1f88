"""A fine-tune must not hand back a model worse than its parent: the parent guard.

Ours (no paper has it). After a job with a ``parent`` and ``spec.guard`` finishes its
steps, the new weights and the parent's are scored by the method's own ``validate``
on the guard cases: the training images whose mask was never trained on (no accepted
mask) but that have a reference mask (ground truth kept for evaluation). They are
not the study's held-out set (never in a snapshot's training items), so no choice is
made on the cases a version is scored on. Their weak labels did train. When the new
weights score below the parent's by more than ``TOLERANCE`` on the method's mask
metric (``GUARD_KEYS``: the first one ``validate`` returns), the job keeps the
parent's weights; the version is registered anyway (``metrics["guard"]`` says what
happened), so the job's record stays complete. A study without reference masks on
its training images has no guard cases: the guard is then skipped and says so.

When every such image has been corrected (the last rounds of an annotator who has
gone through the whole study), nothing unseen is left. The guard then falls back to
the images whose accepted mask the parent also trained on (the same mask version in
the parent's run snapshot), scored against that mask: both weights had the same
chance to fit them, so the check catches forgetting and collapse (a fine-tune that
loses what the parent had learnt from the earlier corrections), not a failure to
generalise. ``verdict["cases"]`` says which set was used. No fallback for a parent
whose run folder is gone (a shipped default).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.training.checkpoint import safe_load

# Mask metrics of the methods' ``validate``, in order of preference (Distill's tile F1
# is the Dice of its tile masks).
GUARD_KEYS = ("dice", "instance_f1")
TOLERANCE = 0.01


def guard_items(train_items: list) -> list:
    """Training items with a reference mask and no accepted mask, as validate sees
    them (the reference mask is the truth; ``mask`` cleared)."""
    return [replace(it, mask=None) for it in train_items if it.reference_mask and not it.mask]


def seen_by_both(train_items: list, parent_items: list) -> list:
    """Training items whose accepted mask (same path and version) the parent's job also
    trained on, as validate sees them: that mask is the truth, ``mask`` cleared."""
    before = {(it.image_id, it.mask, it.mask_version) for it in parent_items if it.mask}
    return [replace(it, reference_mask=it.mask, mask=None) for it in train_items
            if it.mask and (it.image_id, it.mask, it.mask_version) in before]  # fmt: skip


def parent_train_items(parent_dir: str | Path) -> list:
    """The items the parent version's job trained on (its run's snapshot, without the
    held-out and validation cases); [] when its run folder is gone (shipped defaults)
    or it has no info.json."""
    from napari_wsseg.training import snapshots
    from napari_wsseg.training.presets import read_version

    try:
        run_dir = read_version(parent_dir).get("run_dir")
    except FileNotFoundError:  # weights without a record: nothing known about its job
        return []
    path = Path(run_dir) / snapshots.SNAPSHOT if run_dir else None
    if path is None or not path.is_file():
        return []
    snap = snapshots.load_snapshot_file(path)
    return [it for it in snap.items if it.split not in ("val", snapshots.HELD_OUT)]


def _score(method: Any, model: torch.nn.Module, items: list) -> tuple[str | None, float | None]:
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out = method.validate(model, items)
    finally:
        model.train(was)
    key = next((k for k in GUARD_KEYS if isinstance(out.get(k), int | float)), None)
    return key, (float(out[key]) if key else None)


def apply_guard(spec: Any, method: Any, model: torch.nn.Module, train_items: list) -> dict:
    """Keep the parent's weights in ``model`` if the fine-tune is worse on the guard
    cases; returns what was measured (``kept_parent``, the two scores, the metric)."""
    if not spec.parent:
        return {"checked": False, "reason": "no parent"}
    items, cases = guard_items(train_items), "unseen"
    if not items:
        items, cases = seen_by_both(train_items, parent_train_items(spec.parent)), "seen_by_both"
    if not items:
        return {"checked": False, "reason": "no guard cases"}
    key, new = _score(method, model, items)
    if key is None:
        return {"checked": False, "reason": f"{method.name}: validate gives no mask metric"}
    parent = method.build_model()
    parent.load_state_dict(safe_load(Path(spec.parent) / "weights.pt"))
    parent.to(next(model.parameters()).device)
    _, old = _score(method, parent, items)
    kept = old is not None and new < old - TOLERANCE
    if kept:
        model.load_state_dict(parent.state_dict())
    return {"checked": True, "metric": key, "new": new, "parent": old,
            "kept_parent": bool(kept), "n_cases": len(items), "cases": cases}  # fmt: skip
