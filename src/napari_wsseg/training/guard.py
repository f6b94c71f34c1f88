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
    items = guard_items(train_items)
    if not spec.parent or not items:
        return {"checked": False, "reason": "no guard cases" if spec.parent else "no parent"}
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
            "kept_parent": bool(kept), "n_cases": len(items)}  # fmt: skip
