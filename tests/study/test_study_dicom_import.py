"""DICOM folders into a study: one series copied, atomically; series from the CSV."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from test_io_dicom_folders import _dose_report, _study
from test_io_dicom_series import _make_series

from napari_wsseg.io import read_image
from napari_wsseg.study import Study, importing


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def export(tmp_path):
    """A study folder with Axial (6 slices), Coronal (3) and Scout (1) series."""
    folder = tmp_path / "export"
    return folder, _study(folder)


@pytest.fixture
def study(tmp_path):
    with Study.create(tmp_path / "s") as study:
        yield study


def test_only_the_main_series_is_copied_and_reads_back_the_same(export, study):
    folder, uids = export
    before = _files(folder)
    rec = study.image(study.add_image(folder, "ct", labels={"pdac": 1}))
    assert rec.relpath == "images/ct/export" and rec.labels == {"pdac": 1.0}
    assert len(before) == 10 and _files(folder) == before  # the source is untouched
    copied = _files(rec.path)
    assert len(copied) == 6 and all(f.startswith("SE000002/IM") for f in copied)
    source, back = read_image(folder), read_image(rec.path)
    np.testing.assert_array_equal(back.data, source.data)
    assert back.scale == source.scale and back.translate == source.translate
    assert back.meta["other_series"] == []  # the study's copy holds one series
    series = rec.meta["series"]
    assert (series["uid"], series["description"], series["n_slices"]) == (
        uids["Axial"],
        "Axial",
        6,
    )
    assert rec.meta["source_folder"] == str(folder.resolve())
    assert rec.meta["shape"] == [6, 128, 128]
    assert [o["description"] for o in rec.meta["other_series"]] == ["Coronal", "Scout"]
    assert study.check() == []

    coronal = study.image(study.add_image(folder, None, series=uids["Coronal"]))
    assert coronal.relpath == "images/ct/export_1" and coronal.modality == "ct"
    assert len(_files(coronal.path)) == 3 and coronal.meta["series"]["description"] == "Coronal"
    np.testing.assert_array_equal(
        read_image(coronal.path).data, read_image(folder, series=uids["Coronal"]).data
    )


def test_nested_cd_export_is_imported_without_its_extras(tmp_path, study):
    cd = tmp_path / "cd"
    _make_series(cd / "DICOM" / "PA000000" / "ST000000" / "SE000001", list(range(5)))
    shutil.copy(get_testdata_file("DICOMDIR", download=False), cd / "DICOMDIR")
    (cd / "README.TXT").write_text("Burned by a PACS")
    _dose_report(cd / "DICOM" / "PA000000" / "ST000000" / "SE000099" / "IM000001")
    rec = study.image(study.add_image(cd, "ct"))
    copied = _files(rec.path)
    assert len(copied) == 5
    assert all(f.startswith("DICOM/PA000000/ST000000/SE000001/IM") for f in copied)
    np.testing.assert_array_equal(read_image(rec.path).data, read_image(cd).data)
    assert rec.meta["series"]["n_slices"] == 5 and rec.meta["other_series"] == []


def test_crash_during_copy_leaves_nothing_and_a_retry_takes_the_plain_name(
    export, study, monkeypatch
):
    folder, _ = export
    copied = []

    def failing_copy(src, dst):
        if len(copied) == 3:
            raise OSError("No space left on device")
        shutil.copy2(src, dst)
        copied.append(dst)

    monkeypatch.setattr(importing, "copy_file", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        study.add_image(folder, "ct")
    assert list((study.root / "images" / "ct").iterdir()) == []
    assert study.images() == [] and study.check() == []

    def broken_insert(*args):
        raise OSError("disk I/O error")

    monkeypatch.setattr(study, "insert_image", broken_insert)
    monkeypatch.setattr(importing, "copy_file", shutil.copy2)
    with pytest.raises(OSError, match="disk I/O"):  # fails after the rename: undone too
        study.add_image(folder, "ct")
    assert list((study.root / "images" / "ct").iterdir()) == []

    monkeypatch.undo()
    rec = study.image(study.add_image(folder, "ct"))
    assert rec.relpath == "images/ct/export" and len(_files(rec.path)) == 6


def test_check_reports_and_cleans_an_unfinished_import(export, study):
    left = study.root / "images" / "ct" / ".tmp-export-4242-0"
    (left / "SE000002").mkdir(parents=True)
    (left / "SE000002" / "IM0000").write_bytes(b"half a slice")
    assert study.check() == ["unfinished import images/ct/.tmp-export-4242-0 (no catalog row)"]
    assert study.check(clean=True)[0].endswith(": removed")
    assert not left.exists() and study.check() == []


def test_folder_inside_the_study_is_registered_in_place(export, study, tmp_path):
    folder, uids = export
    inside = shutil.copytree(folder, study.root / "raw" / "export")
    with pytest.raises(ValueError, match="holds 3 series.*import the folder from outside"):
        study.add_image(inside, "ct", series=uids["Coronal"])
    rec = study.image(study.add_image(inside, "ct", copy=False))
    assert rec.relpath == "raw/export" and len(_files(rec.path)) == 10  # nothing moved
    assert rec.meta["series"]["uid"] == uids["Axial"] and len(rec.meta["other_series"]) == 2
    one = study.add_image(inside / "SE000003", "ct", series=uids["Coronal"])  # one series
    assert study.image(one).meta["series"]["description"] == "Coronal"
    with pytest.raises(ValueError, match="lies inside this folder"):
        study.add_image(tmp_path, "ct")


def test_csv_series_column_picks_the_series(export, study, tmp_path):
    folder, uids = export
    csv = tmp_path / "list.csv"
    csv.write_text(f"path,modality,series,pdac\nexport,ct,{uids['Coronal']},1\nexport,ct,,0\n")
    ids = study.import_csv(csv)
    recs = [study.image(i) for i in ids]
    assert [r.meta["series"]["description"] for r in recs] == ["Coronal", "Axial"]
    assert [len(_files(r.path)) for r in recs] == [3, 6]
    assert [r.labels for r in recs] == [{"pdac": 1.0}, {"pdac": 0.0}]
    for row, message in [
        ("export,ct,nope,", r"list.csv, row 2: .*export: no series 'nope'.*'Coronal'"),
        ("export,ct,7,", "row 2: .*no series 7"),
        ("export/SE000002/IM0000,ct,1,", "row 2: series '1' given for .*IM0000.*not a folder"),
    ]:
        csv.write_text(f"path,modality,series,pdac\n{row}\n")
        with pytest.raises(ValueError, match=message):
            study.import_csv(csv)
    assert len(study.images()) == 2
