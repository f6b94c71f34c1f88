"""The runner in-process: losses fall, stages freeze what they should, exact resume."""

from __future__ import annotations

import threading

import torch
from wsseg_toymethod import TOY

from napari_wsseg.training import state
from napari_wsseg.training.progress import read_progress, request_stop, stop_requested
from napari_wsseg.training.runner import resume, train
from napari_wsseg.training.spec import JobSpec


def _spec(snapshot, out, **kw) -> JobSpec:
    base = dict(
        method=TOY,
        out=str(out),
        snapshot=str(snapshot),
        study=str(out.parent / "study"),
        val_fraction=0.25,
        checkpoint_every=5,
    )
    base.update(kw)
    return JobSpec(**base)


def test_training_runs_stages_and_losses_fall(toy_snapshot, tmp_path, monkeypatch):
    import napari_wsseg.training.loop as loop_mod

    spec = _spec(toy_snapshot, tmp_path / "run", stage_steps={"classify": 30}, register=True)
    holder: dict = {}
    original_init = loop_mod.StageLoop.__init__

    def init(self, ctx):  # keep a handle on the model the loop trains
        holder["model"] = ctx.model
        original_init(self, ctx)

    def hook(si, idx):
        if si == 1 and "conv1" not in holder:
            holder["conv1"] = holder["model"].conv1.weight.detach().clone()

    monkeypatch.setattr(loop_mod.StageLoop, "__init__", init)
    result = train(spec, on_batch=hook)
    assert result.status == "done" and result.global_step == 36
    events = read_progress(tmp_path / "run")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"step", "val", "checkpoint"} <= set(kinds)
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 37))
    assert all({"loss", "bce", "dice"} <= set(e["losses"]) for e in steps)
    assert steps[-1]["eta_s"] == 0.0 and steps[-1]["samples_per_s"] > 0
    first = sum(e["losses"]["bce"] for e in steps[:5]) / 5
    last = sum(e["losses"]["bce"] for e in steps[25:30]) / 5
    assert last < first
    # the refine stage trains conv2 only (Method.trainable): conv1 is unchanged after it
    assert torch.equal(holder["conv1"], result.model.conv1.weight.detach())
    assert [e["lr"] for e in steps][-1] == 0.01  # refine stage lr = lr / 2
    # the registered version holds the validation metrics
    assert result.version_dir.name == "v001"
    assert result.metrics["accuracy"] >= 0.5 and 0 <= result.metrics["dice"] <= 1


def test_training_data_order_is_the_seeded_permutation(toy_snapshot, tmp_path):
    seen: list[tuple[int, list[int]]] = []
    spec = _spec(
        toy_snapshot, tmp_path / "run", stage_steps={"classify": 6, "refine": 1}, register=False
    )
    train(spec, on_batch=lambda si, idx: seen.append((si, list(idx))))
    stage0 = [i for si, idx in seen if si == 0 for i in idx]
    g0 = state.epoch_generator(0, 0, 0)
    g1 = state.epoch_generator(0, 0, 1)
    expected = (
        torch.randperm(12, generator=g0).tolist() + torch.randperm(12, generator=g1).tolist()
    )
    assert stage0 == expected  # 12 training items, batch 4: 3 steps an epoch


def test_training_shard_gives_ranks_disjoint_equal_shares():
    order = list(range(10))
    a, b, c = (state.shard(order, r, 3) for r in range(3))
    assert len(a) == len(b) == len(c) == 4
    assert set(a) | set(b) | set(c) == set(order)
    assert state.batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]


def test_training_resume_matches_straight_run(toy_snapshot, tmp_path):
    straight = train(_spec(toy_snapshot, tmp_path / "a", register=False))
    ref = straight.model.state_dict()
    # stop mid-epoch of stage 0, exactly at the end of stage 0, and inside stage 1
    for k in (4, 12, 15):
        stop, n = threading.Event(), [0]

        def hook(si, idx, k=k, stop=stop, n=n):
            n[0] += 1
            if n[0] == k:
                stop.set()

        run = tmp_path / f"b{k}"
        part = train(_spec(toy_snapshot, run, register=False), stop=stop, on_batch=hook)
        assert part.status == "cancelled" and part.global_step == k
        assert (run / "checkpoint.pt").exists()
        done = resume(run)
        assert done.status == "done" and done.global_step == 18
        got = done.model.state_dict()
        for key in ref:
            torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-6)
    # a finished job resumes to "done" without training again
    again = resume(tmp_path / "b4")
    assert again.status == "done" and again.global_step == 18


def test_training_stop_request_file_stops_after_the_step_and_is_consumed(toy_snapshot, tmp_path):
    """The dock's cancel: a request file written before the job starts still stops it
    cleanly after its first step (SIGTERM that early would kill it), and a resume runs
    to the end because the job removed the request when it acted on it."""
    run = tmp_path / "run"
    run.mkdir()
    request_stop(run)
    part = train(_spec(toy_snapshot, run, register=False))
    assert part.status == "cancelled" and part.global_step == 1
    assert read_progress(run)[-1]["event"] == "cancelled"
    assert not stop_requested(run) and (run / "checkpoint.pt").exists()
    done = resume(run)
    assert done.status == "done" and done.global_step == 18
