"""Progress: one ``checkpoint`` event per checkpoint written, the final one included."""

from __future__ import annotations

from wsseg_toymethod import TOY

from napari_wsseg.training.progress import read_progress
from napari_wsseg.training.runner import train
from napari_wsseg.training.spec import JobSpec


def test_training_final_checkpoint_event_is_written_once(toy_snapshot, tmp_path):
    spec = JobSpec(
        method=TOY,
        out=str(tmp_path / "run"),
        snapshot=str(toy_snapshot),
        val_fraction=0.25,
        stage_steps={"classify": 4, "refine": 2},
        checkpoint_every=2,
        register=False,
    )
    result = train(spec)
    assert result.status == "done" and result.global_step == 6
    ckpts = [e for e in read_progress(tmp_path / "run") if e["event"] == "checkpoint"]
    steps = [e["step"] for e in ckpts]
    assert steps.count(6) == 1 and len(steps) == len(set(steps))
    # every 2 steps inside a stage, the end of stage 0, and the final (done) one
    assert [(e["step"], e["stage_index"], e["stage_step"]) for e in ckpts] == [
        (2, 0, 2),
        (4, 1, 0),
        (6, 2, 0),
    ]
