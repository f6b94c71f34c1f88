"""DICOM folders as PACS and CDs export them: nested trees, several series, localizers."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from test_io_dicom_series import STEP, _make_series

from napari_wsseg._reader import get_reader
from napari_wsseg.io import (
    ImageReadError,
    can_read,
    has_dicom_files,
    list_dicom_series,
    read_image,
)

CORONAL = [1, 0, 0, 0, 0, -1]


def _hu(base, k):
    return base.pixel_array.astype(np.int32) + int(base.RescaleIntercept) + 10 * k


def _dose_report(path):
    """A DICOM file without pixels, like a CT dose report."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    for key in ("PixelData", "Rows", "Columns"):
        delattr(ds, key)
    ds.Modality, ds.SeriesInstanceUID = "SR", generate_uid()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def _study(root):
    """Axial (6 slices, SeriesNumber 2), coronal (3 slices, 3), 64 x 64 scout (1, 1)."""
    uids = {}
    specs = [("Axial", 2, range(6), None, None), ("Coronal", 3, range(3), CORONAL, None)]
    specs.append(("Scout", 1, [0], CORONAL, (64, 64)))
    for name, number, ks, iop, size in specs:
        uids[name] = generate_uid()
        _make_series(
            root / f"SE00000{number}",
            list(ks),
            size,
            uid=uids[name],
            iop=iop,
            SeriesDescription=name,
            SeriesNumber=number,
        )
    return uids


def test_nested_cd_export_reads_like_the_flat_folder(tmp_path):
    base = _make_series(tmp_path / "flat", list(range(5)))
    cd = tmp_path / "cd"
    _make_series(cd / "DICOM" / "PA000000" / "ST000000" / "SE000001", list(range(5)))
    shutil.copy(get_testdata_file("DICOMDIR", download=False), cd / "DICOMDIR")
    (cd / "README.TXT").write_text("Burned by a PACS; open with the viewer below")
    (cd / "index.xml").write_text("<patients/>")
    _dose_report(cd / "DICOM" / "PA000000" / "ST000000" / "SE000099" / "IM000001")
    assert can_read(cd) and not has_dicom_files(cd)
    flat, image = read_image(tmp_path / "flat"), read_image(cd)
    np.testing.assert_array_equal(image.data, flat.data)
    np.testing.assert_array_equal(image.data[3], _hu(base, 3))
    assert image.scale == flat.scale and image.translate == flat.translate
    assert image.meta["series"]["n_slices"] == 5 and image.meta["other_series"] == []
    assert image.meta["files"][0].startswith("DICOM/PA000000/ST000000/SE000001/IM")
    assert any("SE000099/IM000001: no pixels" in s for s in image.meta["skipped_files"])
    [(data, kwargs, _)] = get_reader(str(cd))(str(cd))
    assert kwargs["name"] == "cd" and data.shape == (5, 128, 128)


def test_study_folder_reads_the_main_series_and_lists_the_others(tmp_path):
    uids = _study(tmp_path / "study")
    image = read_image(tmp_path / "study", "ct")
    axial = read_image(tmp_path / "study" / "SE000002")
    np.testing.assert_array_equal(image.data, axial.data)
    assert image.data.shape == (6, 128, 128) and image.scale == axial.scale
    assert image.meta["series"]["uid"] == uids["Axial"]
    others = {o["description"]: (o["uid"], o["n_slices"]) for o in image.meta["other_series"]}
    assert others == {"Coronal": (uids["Coronal"], 3), "Scout": (uids["Scout"], 1)}

    coronal = read_image(tmp_path / "study", series=uids["Coronal"])
    assert coronal.data.shape == (128, 3, 128)  # LPS (Z, Y, X): 3 slices along Y
    assert coronal.meta["series"]["description"] == "Coronal"
    scout = read_image(tmp_path / "study", series=2)  # index from meta["other_series"]
    assert scout.meta["series"]["description"] == "Scout" and scout.data.shape == (64, 1, 64)
    with pytest.raises(ImageReadError, match=r"study: no series 'nope'.*'Coronal'"):
        read_image(tmp_path / "study", series="nope")
    with pytest.raises(ValueError, match="DICOM folders only"):
        read_image(tmp_path / "study" / "SE000002" / "IM0000", series=0)


def test_napari_reader_gives_one_layer_per_series_main_first(tmp_path):
    uids = _study(tmp_path / "study")
    layers = get_reader(str(tmp_path / "study"))(str(tmp_path / "study"))
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["Axial (6 slices)", "Coronal (3 slices)", "Scout (1 slice)"]
    assert [kw["visible"] for _, kw, _ in layers] == [True, False, False]
    assert [kw["metadata"]["series"]["uid"] for _, kw, _ in layers] == list(uids.values())
    assert layers[1][1]["scale"] == pytest.approx((0.661468, STEP, 0.661468))
    assert all(kw["contrast_limits"] == [-125.0, 350.0] for _, kw, _ in layers)


def test_localizer_inside_the_axial_series_gets_its_own_group(tmp_path):
    base = _make_series(tmp_path / "ct", list(range(5)), SeriesDescription="Thorax")
    uid = pydicom.dcmread(tmp_path / "ct" / "IM0000").SeriesInstanceUID
    _make_series(
        tmp_path / "ct",
        [0],
        size=(64, 64),
        uid=uid,
        iop=CORONAL,
        prefix="LOC",
        SeriesDescription="Thorax",
    )
    tagged = ["ORIGINAL", "PRIMARY", "LOCALIZER"]  # same plane, flagged by ImageType
    _make_series(
        tmp_path / "ct",
        [9],
        size=(96, 96),
        uid=uid,
        prefix="TOP",
        ImageType=tagged,
        SeriesDescription="Thorax",
    )
    image = read_image(tmp_path / "ct")
    assert image.data.shape == (5, 128, 128)
    for k in range(5):
        np.testing.assert_array_equal(image.data[k], _hu(base, k))
    labels = sorted(o["label"] for o in image.meta["other_series"])
    assert labels == ["Thorax coronal", "Thorax localizer axial"]


def test_bad_series_is_skipped_with_a_warning_naming_it(tmp_path):
    study = tmp_path / "study"
    _make_series(study / "a", [0, 1, 2, 3], SeriesDescription="Good", SeriesNumber=5)
    _make_series(study / "b", [0, 1, 3, 4], SeriesDescription="Gappy", SeriesNumber=4)
    image = read_image(study)  # Gappy ranks first (lower number) but does not read
    assert image.meta["series"]["description"] == "Good"
    [gappy] = image.meta["other_series"]
    assert gappy["description"] == "Gappy" and "missing slice" in gappy["problem"]
    with pytest.warns(UserWarning, match=r"study: series 0 'Gappy' .*missing slice") as rec:
        layers = get_reader(str(study))(str(study))
    assert str(study) in str(rec[0].message)
    assert [kw["name"] for _, kw, _ in layers] == ["Good (4 slices)"]

    _make_series(tmp_path / "bad" / "x", [0, 1, 3], SeriesDescription="Gappy")
    _make_series(tmp_path / "bad" / "y", [0, 1, 2], size=(64, 64), SeriesDescription="Mixed")
    expected = r"bad: none of its 2 series reads: .*'Gappy'.*missing slice.*'Mixed'.*mixed slice"
    with pytest.raises(ImageReadError, match=expected):
        read_image(tmp_path / "bad")
    with pytest.raises(ImageReadError, match=expected):
        get_reader(str(tmp_path / "bad"))(str(tmp_path / "bad"))


def test_list_dicom_series_from_headers_in_the_order_series_indexes_use(tmp_path, monkeypatch):
    from napari_wsseg.io import dicom_series

    uids = _study(tmp_path / "study")
    _make_series(tmp_path / "study" / "SE000009", [0, 1, 3, 4, 5, 6, 7], SeriesNumber=9)

    def no_pixels(*_a, **_k):
        raise AssertionError("the listing decoded pixels")

    monkeypatch.setattr(dicom_series, "decode", no_pixels)
    listing = list_dicom_series(tmp_path / "study")
    monkeypatch.undo()
    assert [s["n_slices"] for s in listing] == [7, 6, 3, 1]  # the gappy one ranks first
    assert [s["index"] for s in listing] == [0, 1, 2, 3]
    assert [s["main"] for s in listing] == [False, True, False, False]
    assert "missing slice" in listing[0]["problem"] and listing[1]["problem"] is None
    assert listing[1]["uid"] == uids["Axial"] and listing[2]["label"] == "Coronal"
    assert listing[2]["folder"] == "SE000003" and listing[2]["modality"] == "CT"
    for k in (1, 2):  # index k is what series=k reads
        meta = read_image(tmp_path / "study", series=k).meta["series"]
        assert meta == {key: listing[k][key] for key in meta}
    assert read_image(tmp_path / "study").meta["series"]["index"] == 1  # the main one
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="empty folder"):
        list_dicom_series(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="no such folder"):
        list_dicom_series(tmp_path / "missing")


def test_can_read_needs_a_dicom_file_somewhere_under_the_folder(tmp_path):
    (tmp_path / "notes" / "deeper").mkdir(parents=True)
    (tmp_path / "notes" / "a.txt").write_text("not a slice")
    (tmp_path / "notes" / "deeper" / "b.xml").write_text("<x/>")
    assert not can_read(tmp_path / "notes") and get_reader(str(tmp_path / "notes")) is None
    _make_series(tmp_path / "notes" / "deeper" / "SE1", [0])
    assert can_read(tmp_path / "notes")


def test_single_nested_series_keeps_its_clear_errors(tmp_path):
    root = tmp_path / "export"
    _make_series(root / "DICOM" / "SE1", [0, 1, 2, 4, 5])
    _dose_report(root / "DICOM" / "SE2" / "SR0001")
    with pytest.raises(ImageReadError, match=r"export: missing slice\(s\): a gap of 5 mm"):
        read_image(root)


def test_tied_series_are_refused_and_2d_images_read_as_2d(tmp_path):
    uid = generate_uid()
    _make_series(tmp_path / "tie", [0, 1], prefix="A", uid=uid, SeriesNumber=7)
    _make_series(tmp_path / "tie", [2, 3], prefix="B", SeriesNumber=7)
    with pytest.raises(ImageReadError, match=r"tie: holds 2 different series.*series="):
        read_image(tmp_path / "tie")
    assert read_image(tmp_path / "tie", series=uid).meta["series"]["uid"] == uid

    for number in (3, 2):  # two radiographs: images of their own, no position to stack by
        _make_series(
            tmp_path / "dx", [0], prefix=f"DX{number}", Modality="DX", SeriesNumber=number
        )
    for path in (tmp_path / "dx").iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(path)
    image = read_image(tmp_path / "dx")
    assert image.modality == "xray" and image.data.shape == (128, 128)
    assert image.meta["series"]["number"] == 2 and len(image.meta["other_series"]) == 1
