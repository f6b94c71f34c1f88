"""End to end over the demo study: train, list, evaluate, suggest, predict via ``wsseg``."""

from __future__ import annotations

import json
import shutil

import tifffile
from wsseg_toymethod import TOY

from napari_wsseg.cli import main
from napari_wsseg.study import Study


def test_training_e2e_demo_study(demo_study, tmp_path, capsys):
    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--method",
                TOY,
                "--study",
                str(root),
                "--out",
                str(run),
                "--set",
                "steps=3,1",
                "--set",
                "batch_size=2",
                "--val-fraction",
                "0.5",
            ]
        )
        == 0
    )
    snap = json.loads((run / "snapshot.json").read_text())
    assert {it["modality"] for it in snap["items"]} == {"skin"}
    # the study's held-out case (seeded, stored in the catalog) is never trained on
    assert {it["split"] for it in snap["items"]} == {"train", "val", "held_out"}
    vdir = Study.open(root).models_dir / "toy" / "v001"
    assert (vdir / "weights.pt").exists()
    info = json.loads((vdir / "info.json").read_text())
    assert info["n_train_images"] + info["n_val_images"] + info["n_held_out_images"] == 4

    capsys.readouterr()
    assert main(["models", str(root)]) == 0
    assert "toy/v001" in capsys.readouterr().out

    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(vdir), "--study", str(root), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    seg = metrics["segmentation"]["lesion"]
    assert metrics["n_images"] == 4 and seg["n"] == 4 and 0 <= seg["dice_hard"] <= 1
    assert 0 <= seg["pxap_dataset"] <= 1 and seg["pxap_image_n"] == 4

    capsys.readouterr()
    sugg = tmp_path / "suggest.json"
    assert (
        main(
            ["suggest", "--model", str(vdir), "--study", str(root), "-n", "5", "--out", str(sugg)]
        )
        == 0
    )
    rows = json.loads(sugg.read_text())
    unannotated = [it for it in snap["items"] if not it["mask"] and it["split"] != "held_out"]
    assert len(rows) == len(unannotated) >= 1  # held-out cases are never suggested
    assert all(a["score"] >= b["score"] for a, b in zip(rows, rows[1:]))

    png = snap["items"][0]["path"]
    assert main(["predict", "--model", str(vdir), png, "--out", str(tmp_path / "p")]) == 0
    case = tmp_path / "p" / "skin_000"
    assert tifffile.imread(case / "mask_prob.tif").shape == (128, 128)
    assert (case / "mask.tif").exists() and (tmp_path / "p" / "probabilities.json").exists()
