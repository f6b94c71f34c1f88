"""Job files and typed ``--set`` overrides."""

from __future__ import annotations

import pytest
from wsseg_toymethod import ToyConfig

from napari_wsseg.training.configs import make_config, parse_sets
from napari_wsseg.training.spec import JobSpec


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_training_spec_roundtrip(tmp_path, suffix):
    spec = JobSpec(
        method="glam",
        out=str(tmp_path / "run"),
        study="/s",
        seed=3,
        config={"lr": 0.1},
        stage_steps={"global": 5},
        device="auto",
        amp=False,
    )
    path = spec.save(tmp_path / f"job{suffix}")
    assert JobSpec.load(path) == spec


def test_training_spec_errors_name_the_file(tmp_path):
    bad = tmp_path / "job.json"
    bad.write_text('{"method": "glam", "out": "x", "colour": 1}')
    with pytest.raises(ValueError, match=r"job\.json: unknown job keys \['colour'\]"):
        JobSpec.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="job.json: not a valid job file"):
        JobSpec.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        JobSpec.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="device"):
        JobSpec(method="glam", out="x", device="tpu")


def test_training_spec_step_priority():
    spec = JobSpec(method="m", out="o", steps=7, stage_steps={"a": 3}, epochs=2)
    assert spec.stage_step_count("a", 100, 5) == 3
    assert spec.stage_step_count("b", 100, 5) == 7
    assert JobSpec(method="m", out="o", epochs=2).stage_step_count("b", 100, 5) == 10
    assert JobSpec(method="m", out="o").stage_step_count("b", 100, 5) == 100


def test_training_set_values_are_typed_by_the_config():
    got = parse_sets(ToyConfig, ["channels=4", "lr=1e-3", "flip=false", "steps=5,2"])
    assert got == {"channels": 4, "lr": 0.001, "flip": False, "steps": (5, 2)}
    assert isinstance(got["lr"], float)
    with pytest.raises(KeyError, match="unknown key"):
        parse_sets(ToyConfig, ["nope=1"])
    with pytest.raises(ValueError, match="channels=four"):
        parse_sets(ToyConfig, ["channels=four"])
    with pytest.raises(ValueError, match="boolean"):
        parse_sets(ToyConfig, ["flip=maybe"])
    cfg = make_config(ToyConfig, {"steps": [4, 4], "lr": 1})
    assert cfg.steps == (4, 4) and cfg.lr == 1.0 and isinstance(cfg.lr, float)
