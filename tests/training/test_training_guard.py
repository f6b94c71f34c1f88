"""The parent guard (ours): a fine-tune worse than its parent on the training images
whose masks it never saw hands back the parent's weights."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from napari_wsseg.study.snapshot import SnapshotItem
from napari_wsseg.training.guard import TOLERANCE, apply_guard, guard_items


class _Toy:
    """validate gives 'dice' = the model's single weight (a stand-in for a mask score)."""

    name = "toy"

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(1, 1, bias=False)

    def validate(self, model, items):
        assert all(it.mask is None and it.reference_mask for it in items)
        return {"dice": float(model.weight.item()), "n": len(items)}


def _items() -> list[SnapshotItem]:
    return [
        SnapshotItem(1, "a", "skin", {}, mask="m1", reference_mask="r1"),  # corrected: trained
        SnapshotItem(2, "b", "skin", {}, reference_mask="r2"),  # mask never trained on
        SnapshotItem(3, "c", "skin", {}),  # no truth
    ]


def _setup(tmp_path, parent_w: float, new_w: float):
    method = _Toy()
    parent = method.build_model()
    with torch.no_grad():
        parent.weight.fill_(parent_w)
    torch.save(parent.state_dict(), tmp_path / "weights.pt")
    model = method.build_model()
    with torch.no_grad():
        model.weight.fill_(new_w)
    return method, model, SimpleNamespace(parent=str(tmp_path))


def test_guard_cases_are_the_unseen_masks_only():
    assert [it.image_id for it in guard_items(_items())] == [2]


def test_guard_keeps_the_parent_when_the_fine_tune_is_worse(tmp_path):
    method, model, spec = _setup(tmp_path, 0.8, 0.5)
    verdict = apply_guard(spec, method, model, _items())
    assert verdict["kept_parent"] and verdict["metric"] == "dice" and verdict["n_cases"] == 1
    assert (verdict["new"], verdict["parent"]) == (0.5, 0.800000011920929)
    assert model.weight.detach().item() == torch.tensor(0.8).item()  # the parent's weights back


def test_guard_keeps_a_fine_tune_that_is_not_worse(tmp_path):
    method, model, spec = _setup(tmp_path, 0.8, 0.8 - TOLERANCE / 2)
    assert not apply_guard(spec, method, model, _items())["kept_parent"]
    assert model.weight.detach().item() == torch.tensor(0.8 - TOLERANCE / 2).item()
    none = apply_guard(spec, method, model, _items()[:1])  # nothing unseen to check on
    assert none == {"checked": False, "reason": "no guard cases"}


def _parent_with_run(tmp_path, parent_items: list[SnapshotItem]) -> None:
    """A parent version folder whose info.json points at a run with a snapshot."""
    import json

    from napari_wsseg.study.snapshot import Snapshot

    run = tmp_path / "run"
    run.mkdir()
    Snapshot("study", parent_items).save(run / "snapshot.json")
    (tmp_path / "info.json").write_text(json.dumps({"method": "toy", "run_dir": str(run)}))


def test_no_unseen_case_left_falls_back_to_the_masks_both_versions_trained_on(tmp_path):
    """Every truth is corrected: the guard checks the cases whose accepted mask (same
    version) the parent also trained on, against that mask; a new correction is out."""
    now = [SnapshotItem(1, "a", "skin", {}, mask="m1", mask_version=1, reference_mask="r1"),
           SnapshotItem(2, "b", "skin", {}, mask="m2", mask_version=2, reference_mask="r2"),
           SnapshotItem(4, "d", "skin", {}, mask="m4", mask_version=1)]  # fmt: skip
    before = [
        SnapshotItem(1, "a", "skin", {}, mask="m1", mask_version=1),
        SnapshotItem(2, "b", "skin", {}, mask="m2", mask_version=1),  # re-corrected
        SnapshotItem(4, "d", "skin", {}, mask="m4", mask_version=1, split="held_out"),
    ]
    assert guard_items(now) == []
    method, model, spec = _setup(tmp_path, 0.8, 0.5)
    assert apply_guard(spec, method, model, now) == {
        "checked": False,
        "reason": "no guard cases",
    }  # no run
    _parent_with_run(tmp_path, before)
    verdict = apply_guard(spec, method, model, now)
    assert verdict["cases"] == "seen_by_both" and verdict["n_cases"] == 1
    assert verdict["kept_parent"] and model.weight.detach().item() == torch.tensor(0.8).item()


def test_the_fallback_scores_against_the_accepted_mask(tmp_path):
    from napari_wsseg.training.guard import seen_by_both

    now = [SnapshotItem(1, "a", "skin", {}, mask="m1", mask_version=3)]
    got = seen_by_both(now, [SnapshotItem(1, "a", "skin", {}, mask="m1", mask_version=3)])
    assert [(it.mask, it.reference_mask) for it in got] == [(None, "m1")]
    assert seen_by_both(now, []) == []
