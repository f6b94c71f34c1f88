"""Model registry: versions, weights-only loading, and refusing pickled payloads."""

from __future__ import annotations

import json
import os

import pytest
import torch
from wsseg_toymethod import TOY

from napari_wsseg.training.checkpoint import UnsafeCheckpointError, safe_load
from napari_wsseg.training.registry import list_models, load_model, resolve_version
from napari_wsseg.training.runner import train
from napari_wsseg.training.spec import JobSpec


class _Payload:
    """Pickles as a call to os.system: loading it with full pickle would run it."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_training_registry_versions_and_load(toy_snapshot, tmp_path):
    study = tmp_path / "study"
    spec = JobSpec(
        method=TOY,
        out=str(tmp_path / "r1"),
        study=str(study),
        snapshot=str(toy_snapshot),
        config={"steps": [3, 1]},
        val_fraction=0.25,
    )
    first = train(spec)
    second = train(
        JobSpec(
            **{**spec.to_json(), "out": str(tmp_path / "r2"), "parent": str(first.version_dir)}
        )
    )
    assert [first.version_dir.name, second.version_dir.name] == ["v001", "v002"]
    vdir = second.version_dir
    assert {p.name for p in vdir.iterdir()} == {
        "weights.pt",
        "job.json",
        "metrics.json",
        "info.json",
        "timing.json",  # measured step times, for the Retrain dock's estimate
        "ood.json",  # statistics of what it learnt from (training/ood.py)
    }
    info = json.loads((vdir / "info.json").read_text())
    assert info["parent"] == str(first.version_dir) and info["method"] == TOY
    assert info["n_train_images"] == 12 and info["n_expert_masks"] >= 1
    assert info["config"]["steps"] == [3, 1] and info["created"]
    assert json.loads((vdir / "metrics.json").read_text()) == second.metrics
    # --model as `wsseg models` prints it: METHOD (current: none promoted -> oldest),
    # METHOD/vNNN, METHOD:vNNN; a folder as given; anything else names what is missing
    assert resolve_version(TOY, study) == first.version_dir
    assert resolve_version(f"{TOY}/v002", study) == resolve_version(f"{TOY}:v002", study) == vdir
    assert resolve_version(str(vdir)) == vdir
    with pytest.raises(
        FileNotFoundError, match=r"no finished version v009 .*finished: v001, v002"
    ):
        resolve_version(f"{TOY}/v009", study)
    with pytest.raises(FileNotFoundError, match=rf"no finished 'nosuch'.*with versions: {TOY}"):
        resolve_version("nosuch", study)
    with pytest.raises(FileNotFoundError, match="not a model version folder"):
        resolve_version(f"{TOY}/../../etc", study)  # not a version name: never a path
    with pytest.raises(FileNotFoundError, match="with --study"):
        resolve_version(TOY)
    method, model = load_model(vdir)
    assert method.config.steps == (3, 1)  # JSON lists come back as the field's tuple
    for key, value in second.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    rows = list_models(study)
    assert [(r["method"], r["version"]) for r in rows] == [("toy", "v001"), ("toy", "v002")]


def test_training_registry_refuses_pickled_payload(toy_snapshot, tmp_path):
    study = tmp_path / "study"
    spec = JobSpec(
        method=TOY,
        out=str(tmp_path / "r"),
        study=str(study),
        snapshot=str(toy_snapshot),
        config={"steps": [1, 1]},
    )
    vdir = train(spec).version_dir
    marker = tmp_path / "payload_ran"
    evil = {"conv1.weight": torch.zeros(1), "x": _Payload(f"touch {marker}")}
    torch.save(evil, vdir / "weights.pt")
    with pytest.raises(UnsafeCheckpointError, match="weights.pt: refused to load"):
        load_model(vdir)
    with pytest.raises(ValueError, match="refused"):
        safe_load(vdir / "weights.pt")
    assert not marker.exists()
    # the same for a run checkpoint read by resume
    torch.save({"model": evil}, tmp_path / "r" / "checkpoint.pt")
    from napari_wsseg.training.runner import resume

    with pytest.raises(UnsafeCheckpointError, match="checkpoint.pt"):
        resume(tmp_path / "r")
    assert not marker.exists()
