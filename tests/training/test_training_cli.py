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

    # a folder of PNG / TIFF images (not a DICOM series): one case per readable file
    folder = tmp_path / "pngs"
    folder.mkdir()
    from skimage.io import imsave

    imsave(folder / "c.png", (img * 100).astype(np.uint8), check_contrast=False)
    tifffile.imwrite(folder / "d.tif", img)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "pred_dir"
    argv = ["predict", "--model", str(vdir), str(folder), "--out", str(out), "--modality", "skin"]
    assert main(argv) == 0
    probs = json.loads((out / "probabilities.json").read_text())
    assert sorted(probs) == [str(folder / "c.png"), str(folder / "d.tif")]
    for case in ("c", "d"):
        assert tifffile.imread(out / case / "mask_prob.tif").shape == (16, 16)


def test_training_cli_errors_are_clear(tmp_path, capsys):
    assert main(["train", "--method", TOY, "--out", str(tmp_path / "r")]) == 2
    assert "needs a job file" in capsys.readouterr().err
    assert (
        main(["train", "--method", "nosuch", "--snapshot", "x", "--out", "r", "--set", "a=1"]) == 2
    )
    assert "unknown method 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--device", "tpu"])


def test_training_cli_predict_expands_image_folders(tmp_path, capsys):
    """A folder of images gives its readable files; a DICOM series folder stays one input."""
    from napari_wsseg.training.cli import expand_inputs

    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "b.tif", np.zeros((4, 4), np.uint8))
    tifffile.imwrite(images / "a.tiff", np.zeros((4, 4), np.uint8))
    (images / "readme.txt").write_text("notes")
    (images / ".hidden.tif").write_bytes((images / "b.tif").read_bytes())
    series = images / "series"  # sub-folder whose first file is DICOM ('DICM' at byte 128)
    series.mkdir()
    for i in range(2):
        (series / f"{i}.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    (images / "other").mkdir()  # a folder that is no series is not searched
    tifffile.imwrite(images / "other" / "x.tif", np.zeros((4, 4), np.uint8))
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, np.zeros((4, 4), np.uint8))

    got = expand_inputs([str(images), str(series), str(single)])
    assert got == [images / "a.tiff", images / "b.tif", series, series, single]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("notes")
    argv = ["predict", "--model", str(tmp_path / "nomodel"), str(empty), "--out", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no readable image" in err
