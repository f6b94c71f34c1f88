"""``wsseg export``: MONAI datalists and nnU-Net raw datasets that those tools read."""

from __future__ import annotations

import json

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from napari_wsseg.cli import main
from napari_wsseg.io import read_image, read_mask
from napari_wsseg.study.export import export_nnunet


def test_monai_datalist_loads_with_monai_and_points_at_the_files(demo_study, tmp_path):
    out = tmp_path / "lists" / "datalist.json"
    assert main(["export", str(demo_study.root), str(out), "--val-fraction", "0.5"]) == 0
    doc = json.loads(out.read_text())
    train = load_decathlon_datalist(out, data_list_key="training")
    val = load_decathlon_datalist(out, data_list_key="validation")
    weak = load_decathlon_datalist(out, data_list_key="weak", is_segmentation=False)
    with_masks = [r for r in demo_study.images() if demo_study.latest_accepted_mask(r.id)]
    assert len(train) + len(val) == len(with_masks) == doc["numTraining"] + len(val)
    assert len(weak) == sum(bool(r.labels) for r in demo_study.images()) - len(with_masks)
    by_id = {r.id: r for r in demo_study.images()}
    for item in train + val:
        rec = by_id[item["image_id"]]
        assert item["image"] == str(rec.path.resolve())
        assert item["label"] == str(demo_study.latest_accepted_mask(rec.id).path.resolve())
        assert item["class_labels"] == rec.labels
    assert all("label" not in item for item in weak)

    ct = tmp_path / "ct.json"
    assert main(["export", str(demo_study.root), str(ct), "--modality", "ct"]) == 0
    assert json.loads(ct.read_text())["labels"] == {"0": "background", "1": "pdac"}


def test_nnunet_ct_dataset_has_matching_image_and_label_geometry(demo_study, tmp_path):
    assert (
        main(
            [
                "export",
                str(demo_study.root),
                str(tmp_path),
                "--format",
                "nnunet",
                "--modality",
                "ct",
                "--dataset-id",
                "7",
                "--name",
                "pdac ct",
            ]
        )
        == 0
    )
    root = tmp_path / "Dataset007_pdacct"
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["labels"] == {"background": 0, "pdac": 1} and doc["file_ending"] == ".nii.gz"
    labels = sorted((root / "labelsTr").iterdir())
    assert doc["numTraining"] == len(labels) >= 1
    for lab in labels:
        img = root / "imagesTr" / lab.name.replace(".nii.gz", "_0000.nii.gz")
        a, b = nib.load(str(img)), nib.load(str(lab))
        assert a.shape == b.shape
        np.testing.assert_allclose(a.affine, b.affine)
        image_id = int(lab.name.split("_")[-1].split(".")[0])
        rec = demo_study.image(image_id)
        np.testing.assert_array_equal(read_image(img).data, read_image(rec.path).data)
        version = demo_study.latest_accepted_mask(image_id)
        np.testing.assert_array_equal(read_mask(lab), demo_study.load_mask(version.id))


def test_nnunet_2d_sets_are_png_and_xray_is_refused(demo_study, tmp_path):
    root = export_nnunet(demo_study, tmp_path, "skin", 8)
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    (lab,) = sorted((root / "labelsTr").iterdir())[:1]
    image = iio.imread(root / "imagesTr" / lab.name.replace(".png", "_0000.png"))
    assert image.shape[:2] == iio.imread(lab).shape and image.shape[2] == 3
    mammo = export_nnunet(demo_study, tmp_path, "mammo", 9)
    assert json.loads((mammo / "dataset.json").read_text())["channel_names"] == {"0": "mammo"}
    with pytest.raises(ValueError, match="X-ray findings overlap"):
        export_nnunet(demo_study, tmp_path, "xray", 10)
    with pytest.raises(FileExistsError, match="not empty"):
        export_nnunet(demo_study, tmp_path, "skin", 8)
