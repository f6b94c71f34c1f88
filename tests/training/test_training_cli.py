"""``wsseg train / methods / models / predict`` in-process through the real parser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from wsseg_toymethod import TOY

from napari_wsseg.cli import main


def test_training_cli_methods_lists_config_defaults(capsys):
    assert main(["methods", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    from napari_wsseg.methods import available_methods

    assert set(table) == set(available_methods())
    for entry in table.values():
        assert entry["modality"] and isinstance(entry["config"], dict) and entry["config"]


def test_training_cli_train_models_predict(toy_snapshot, tmp_path, capsys):
    study, run = tmp_path / "study", tmp_path / "run"
    argv = [
        "train",
        "--method",
        TOY,
        "--snapshot",
        str(toy_snapshot),
        "--study",
        str(study),
        "--out",
        str(run),
        "--set",
        "steps=4,2",
        "--set",
        "flip=false",
        "--seed",
        "5",
    ]
    assert main(argv) == 0
    job = json.loads((run / "job.json").read_text())
    assert job["config"] == {"steps": [4, 2], "flip": False} and job["seed"] == 5
    assert (run / "snapshot.json").exists() and (run / "checkpoint.pt").exists()
    assert "done at step 6" in capsys.readouterr().out

    assert main(["models", str(study)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("toy/v001") and "parent=-" in line

    vdir = study / "models" / "toy" / "v001"
    img = np.zeros((16, 16), np.float32)
    img[4:8, 4:8] = 2.0
    inputs = []
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, img)
        inputs.append(str(tmp_path / name))
    out = tmp_path / "pred"
    assert (
        main(["predict", "--model", str(vdir), *inputs, "--out", str(out), "--modality", "skin"])
        == 0
    )
    probs = json.loads((out / "probabilities.json").read_text())
    assert set(probs) == set(inputs) and 0 <= probs[inputs[0]]["lesion"] <= 1
    for case in ("a", "b"):
        prob = tifffile.imread(out / case / "mask_prob.tif")
        assert prob.shape == (16, 16) and prob.dtype == np.float32
        assert tifffile.imread(out / case / "attention.tif").shape == (16, 16)
        assert set(np.unique(tifffile.imread(out / case / "mask.tif"))) <= {0, 1}
        boxes = json.loads((out / case / "boxes.json").read_text())
        assert boxes == {"boxes_yxyx": [[0.0, 0.0, 4.0, 4.0]], "labels": ["corner"]}


def test_training_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--method", TOY, "--out", str(tmp_path / "r")]) == 2
    assert "needs a job file" in capsys.readouterr().err
    assert (
        main(["train", "--method", "nosuch", "--snapshot", "x", "--out", "r", "--set", "a=1"]) == 2
    )
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--device", "tpu"])
