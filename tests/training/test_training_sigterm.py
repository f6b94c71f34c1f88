"""SIGTERM on a real ``wsseg train`` process, then ``wsseg train --resume``: the
final weights equal those of the same job run straight through."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from wsseg_toymethod import TOY

from napari_wsseg.training.progress import read_progress
from napari_wsseg.training.runner import train
from napari_wsseg.training.spec import JobSpec

WSSEG = str(Path(sys.executable).parent / "wsseg")


def _wait_for_step(run_dir: Path, proc: subprocess.Popen, step: int, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        steps = [e for e in read_progress(run_dir) if e["event"] == "step"]
        if steps and steps[-1]["step"] >= step:
            return
        assert proc.poll() is None, f"job ended early: {proc.communicate()}"
        time.sleep(0.05)
    raise AssertionError("no progress from the training process")


def test_training_sigterm_then_resume_equals_straight_run(toy_snapshot, tmp_path, toy_env):
    study = tmp_path / "study"
    config = {"steps": [24, 8], "sleep_s": 0.05}
    spec = JobSpec(
        method=TOY,
        out=str(tmp_path / "run"),
        study=str(study),
        snapshot=str(toy_snapshot),
        config=config,
        checkpoint_every=0,
    )
    job = tmp_path / "job.yaml"
    spec.save(job)
    proc = subprocess.Popen(
        [WSSEG, "train", str(job)], env=toy_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_for_step(tmp_path / "run", proc, 4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err.decode()
    events = read_progress(tmp_path / "run")
    stopped = [e for e in events if e["event"] == "cancelled"]
    assert len(stopped) == 1 and 4 <= stopped[0]["step"] < 32
    assert any(e["event"] == "checkpoint" for e in events)
    assert json.loads((tmp_path / "run" / "job.json").read_text())["config"] == config
    assert (tmp_path / "run" / "snapshot.json").exists()

    res = subprocess.run(
        [WSSEG, "train", "--resume", str(tmp_path / "run")],
        env=toy_env,
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr.decode()
    done = [e for e in read_progress(tmp_path / "run") if e["event"] == "done"]
    resumed = torch.load(Path(done[-1]["version_dir"]) / "weights.pt", weights_only=True)

    # the same job straight through, in this process (sleeping changes no weight)
    straight = JobSpec(
        **{
            **spec.to_json(),
            "out": str(tmp_path / "straight"),
            "config": {**config, "sleep_s": 0.0},
            "register": False,
        }
    )
    ref = train(straight).model.state_dict()
    assert set(resumed) == set(ref)
    for key in ref:
        torch.testing.assert_close(resumed[key], ref[key], rtol=1e-6, atol=1e-6)
