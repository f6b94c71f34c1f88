"""A study's mask versions out as DICOM SEG and back in as new versions (API and CLI)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import make_projection
from test_io_dicom_series import _make_series

from napari_wsseg.cli import main
from napari_wsseg.study import Study
from napari_wsseg.study.dicom_seg import export_seg, import_seg


@pytest.fixture
def study(tmp_path):
    with Study.create(tmp_path / "s") as study:
        yield study


def test_ct_version_goes_out_and_comes_back_as_a_new_version(tmp_path, study):
    _make_series(tmp_path / "ct", list(range(5)), iop=[0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    image_id = study.add_image(tmp_path / "ct", "ct", labels={"pdac": 1})
    shape = tuple(study.image(image_id).meta["shape"])
    mask = np.zeros(shape, np.uint8)
    mask[10:40, 20:60, 1:3] = 1
    pred = study.save_mask(image_id, mask, "predicted", model_version="iagnet-v2")
    mask[10:20, 20:30, 3] = 1
    vid = study.save_mask(
        image_id, mask, "corrected", author="Doe^Jane", parent=pred, model_version="iagnet-v2"
    )
    out = export_seg(study, vid, tmp_path / "out" / "seg.dcm")
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert (
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID
        == study.image(image_id).meta["series"]["uid"]
    )
    assert ds.ContentDescription == f"wsseg mask v2 (corrected) of image {image_id}"

    back = import_seg(study, out)
    v = study.mask_version(back)
    assert (v.image_id, v.version, v.source, v.author, v.model_version) == (
        image_id,
        3,
        "corrected",
        "Doe^Jane",
        "iagnet-v2",
    )
    np.testing.assert_array_equal(study.load_mask(back), mask)
    assert study.check() == []


def test_cr_findings_round_trip_through_the_cli(tmp_path, study, capsys):
    make_projection(tmp_path / "cr" / "chest.dcm", "CR")
    image_id = study.add_image(tmp_path / "cr" / "chest.dcm", "xray")
    stack = np.zeros((10, 64, 64), np.uint8)
    stack[3, 5:30, 5:30] = 1
    study.save_mask(image_id, stack, "expert", author="Roe^Rick")
    study.close()
    root = str(study.root)
    seg = str(tmp_path / "chest_seg.dcm")
    assert main(["seg", "export", root, seg, "--image", str(image_id)]) == 0
    assert main(["seg", "import", root, seg, "--author", "importer"]) == 0
    assert f"(v2, expert) of image {image_id}" in capsys.readouterr().out
    with Study.open(root) as again:
        v = again.mask_versions(image_id)[-1]
        assert v.author == "importer" and v.source == "expert"
        np.testing.assert_array_equal(again.load_mask(v.id), stack)


def test_unknown_series_and_non_dicom_images_are_clear_errors(tmp_path, study, capsys):
    make_projection(tmp_path / "a.dcm", "CR")
    image_id = study.add_image(tmp_path / "a.dcm", "xray")
    vid = study.save_mask(image_id, np.zeros((10, 64, 64), np.uint8), "expert")
    seg = export_seg(study, vid, tmp_path / "seg.dcm")
    with Study.create(tmp_path / "other") as other:
        with pytest.raises(KeyError, match="no image of series"):
            import_seg(other, seg)
        import imageio.v3 as iio

        iio.imwrite(tmp_path / "x.png", np.zeros((32, 32), np.uint8))
        png = other.add_image(tmp_path / "x.png", "xray")
        pid = other.save_mask(png, np.zeros((10, 32, 32), np.uint8), "expert")
        with pytest.raises(ValueError, match="is not a DICOM image"):
            export_seg(other, pid, tmp_path / "png_seg.dcm")
    study.close()
    assert main(["seg", "export", str(study.root), str(tmp_path / "b.dcm"), "--image", "99"]) == 2
    assert "no image with id 99" in capsys.readouterr().err
