"""Study browser dock: table, filters, opening a case, labels both ways, navigation,
importing a DICOM folder."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog, QMessageBox
from test_io_dicom_folders import _study

from napari_wsseg.io import read_image
from napari_wsseg.phantoms.demo import make_phantom
from napari_wsseg.study import Study
from napari_wsseg.widgets import _case
from napari_wsseg.widgets.qt_study_browser import COLUMNS, QtStudyBrowser


@pytest.fixture
def browser(make_napari_viewer, study_copy):
    viewer = make_napari_viewer()
    widget = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_study(study_copy)
    return widget


def _ids(browser) -> list[int]:
    return [browser._row_id(r) for r in range(browser.table.rowCount())]


def test_table_lists_every_image_with_its_columns(browser):
    study = browser.study
    assert browser.table.columnCount() == len(COLUMNS)
    assert _ids(browser) == [rec.id for rec in study.images()]  # sorted by id
    row = browser.row_of(study.images("ct")[0].id)
    cells = [browser.table.item(row, c).text() for c in range(len(COLUMNS))]
    rec = study.images("ct")[0]
    assert cells[2] == "ct" and cells[1] == rec.relpath.split("/")[-1]
    assert cells[4] == rec.mask_status and cells[5] == str(rec.n_mask_versions)


def test_filter_by_modality_and_text(browser):
    study = browser.study
    browser.modality.setCurrentText("xray")
    assert _ids(browser) == [r.id for r in study.images("xray")]
    browser.modality.setCurrentText("all")
    browser.filter.setText("pdac")
    want = [r.id for r in study.images("ct") if r.labels.get("pdac")]
    assert want and _ids(browser) == want


def test_double_click_opens_image_with_scale_and_window(browser, qtbot):
    viewer = browser.viewer
    rec = browser.study.images("ct")[0]
    row = browser.row_of(rec.id)
    browser.table.cellDoubleClicked.emit(row, 1)
    layer = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
    expected = read_image(rec.path, modality="ct")
    assert np.allclose(layer.scale, expected.scale)
    assert tuple(layer.contrast_limits) == pytest.approx((-125.0, 350.0))
    assert layer.data.shape == expected.data.shape
    assert _case.current_case(viewer)["image_id"] == rec.id
    # the case's latest accepted mask comes along, on the same grid
    if browser.study.latest_accepted_mask(rec.id) is not None:
        assert np.allclose(_case.mask_layer(viewer).scale, layer.scale)


def test_label_checkboxes_edit_the_study_both_ways(browser, study_copy):
    rec = browser.study.images("xray")[0]
    browser.open_image(rec.id)
    boxes = {
        browser.labels_layout.itemAt(i).widget().text(): browser.labels_layout.itemAt(i).widget()
        for i in range(browser.labels_layout.count())
    }
    assert len(boxes) == 10  # the chest findings vocabulary
    name = next(n for n, b in boxes.items() if not b.isChecked())
    boxes[name].setChecked(True)  # widget -> study
    other = Study.open(study_copy)  # as a second process would see it
    assert other.image(rec.id).labels[name] == 1.0
    row = browser.row_of(rec.id)
    assert name in browser.table.item(row, 3).text()
    other.set_labels(rec.id, {name: 0})  # study -> widget
    other.close()
    browser.refresh()
    browser.open_image(rec.id)
    box = next(
        browser.labels_layout.itemAt(i).widget()
        for i in range(browser.labels_layout.count())
        if browser.labels_layout.itemAt(i).widget().text() == name
    )
    assert not box.isChecked()
    assert name not in browser.table.item(browser.row_of(rec.id), 3).text()


def test_next_previous_follow_table_order(browser):
    ids = _ids(browser)
    browser.open_image(ids[0])
    browser.step(+1)
    assert browser.current_id == ids[1]
    browser.step(+1)
    browser.step(-1)
    assert browser.current_id == ids[1]
    browser.step(-1)
    browser.step(-1)  # stays on the first
    assert browser.current_id == ids[0]


def test_leaving_unsaved_edits_asks_first(browser, monkeypatch):
    viewer = browser.viewer
    rec = next(r for r in browser.study.images("skin") if browser.study.latest_accepted_mask(r.id))
    browser.open_image(rec.id)
    mask = _case.mask_layer(viewer)
    assert not _case.has_unsaved_edits(viewer)
    mask.paint((5, 5), 1)
    assert _case.has_unsaved_edits(viewer)
    asked = []

    def answer(reply):
        def question(*args, **kwargs):
            asked.append(args[2] if len(args) > 2 else "")
            return reply

        return question

    other = browser.study.images("skin")[-1].id
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    browser.open_image(other)
    assert browser.current_id == rec.id and len(asked) == 1
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    browser.open_image(other)
    assert browser.current_id == other and len(asked) == 2
    assert not _case.has_unsaved_edits(viewer)


def test_import_dicom_folder_adds_its_main_series_and_files_still_import(
    browser, tmp_path, monkeypatch
):
    uids = _study(tmp_path / "export")
    chosen = [str(tmp_path / "export")]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: chosen[0])
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _w, _t, text: warnings.append(text))
    before = _ids(browser)
    browser.import_dir_btn.click()  # the dialog answers with the folder
    assert not warnings
    [image_id] = set(_ids(browser)) - set(before)
    row = browser.row_of(image_id)
    assert browser.table.item(row, 1).text() == "export"
    assert browser.table.item(row, 2).text() == "ct"
    assert browser.study.image(image_id).meta["series"]["uid"] == uids["Axial"]
    note = browser.note_label.text()
    assert "series 'Axial' (6 slices)" in note
    assert "2 other series left out: 'Coronal' (3 slices), 'Scout' (1 slice)" in note

    (tmp_path / "empty").mkdir()
    chosen[0] = str(tmp_path / "empty")
    browser.import_dir_btn.click()
    assert len(warnings) == 1 and warnings[0].startswith(chosen[0])
    assert len(_ids(browser)) == len(before) + 1

    png = tmp_path / "lesion.png"  # files: the modality is read from the file, once
    iio.imwrite(png, make_phantom("skin", 0, shape=(32, 32)).image, extension=".png")
    browser.import_files([str(png)])
    [png_id] = set(_ids(browser)) - set(before) - {image_id}
    assert browser.table.item(browser.row_of(png_id), 2).text() == "skin"
