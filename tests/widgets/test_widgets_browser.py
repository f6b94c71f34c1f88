"""Study browser dock: table, filters, opening a case, labels both ways, navigation,
importing files and DICOM folders in a worker, picking a folder's series."""

from __future__ import annotations

import threading

import imageio.v3 as iio
import numpy as np
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QMessageBox
from test_io_dicom_folders import _study
from test_io_dicom_series import _make_series

from napari_wsseg.io import read_image
from napari_wsseg.phantoms.demo import make_phantom
from napari_wsseg.study import Study
from napari_wsseg.widgets import _case
from napari_wsseg.widgets.qt_series_dialog import QtSeriesDialog
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
    browser.table.cellDoubleClicked.emit(row, 1)  # read in a worker
    qtbot.waitUntil(lambda: browser.current_id == rec.id, timeout=10_000)
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


def test_next_previous_follow_table_order(browser, qtbot):
    ids = _ids(browser)
    browser.open_image(ids[0])

    def step(delta: int, want: int) -> None:  # each step reads its case in a worker
        browser.step(delta)
        qtbot.waitUntil(lambda: browser.current_id == want, timeout=10_000)

    step(+1, ids[1])
    step(+1, ids[2])
    step(-1, ids[1])
    step(-1, ids[0])
    browser.step(-1)  # stays on the first
    qtbot.waitUntil(lambda: browser._opening is None, timeout=10_000)
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


def _buttons_enabled(browser) -> bool:
    return all(
        b.isEnabled() for b in (browser.open_btn, browser.import_btn, browser.import_dir_btn)
    )


def test_import_dicom_folder_adds_its_main_series_and_files_still_import(
    browser, tmp_path, monkeypatch, qtbot
):
    uids = _study(tmp_path / "export")
    chosen = [str(tmp_path / "export")]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: chosen[0])
    warnings = []
    monkeypatch.setattr(_case, "tell_error", warnings.append)  # a napari notification
    browser.choose_series = lambda _folder, listing: [listing[0]["index"]]  # keep the main one
    before = _ids(browser)
    with qtbot.waitSignal(browser.import_finished, timeout=10000):
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

    (tmp_path / "empty").mkdir()  # an error in the worker: a warning naming the folder
    chosen[0] = str(tmp_path / "empty")
    with qtbot.waitSignal(browser.import_finished, timeout=10000) as done:
        browser.import_dir_btn.click()
    assert done.args == [[]] and _buttons_enabled(browser)
    assert len(warnings) == 1 and warnings[0].startswith(chosen[0])
    assert "empty folder" in warnings[0] and "import failed" in browser.note_label.text()
    assert len(_ids(browser)) == len(before) + 1

    png = tmp_path / "lesion.png"  # files: the modality is read from the file, once
    iio.imwrite(png, make_phantom("skin", 0, shape=(32, 32)).image, extension=".png")
    with qtbot.waitSignal(browser.import_finished, timeout=10000) as done:
        browser.import_files([str(png)])
    [png_id] = done.args[0]
    assert set(_ids(browser)) - set(before) - {image_id} == {png_id}
    assert browser.table.item(browser.row_of(png_id), 2).text() == "skin"


def test_import_runs_in_a_worker_while_the_ui_thread_keeps_going(
    browser, tmp_path, monkeypatch, qtbot
):
    png = tmp_path / "lesion.png"
    iio.imwrite(png, make_phantom("skin", 1, shape=(32, 32)).image, extension=".png")
    ticked, threads = threading.Event(), []
    real = _case.import_files_at

    def slow_import(root, paths, modality=None):
        threads.append(threading.current_thread())
        # Only a UI thread that keeps turning its event loop fires the timer below.
        assert ticked.wait(10), "the UI thread did not process events during the import"
        return real(root, paths, modality)

    monkeypatch.setattr(_case, "import_files_at", slow_import)
    before = _ids(browser)
    with qtbot.waitSignal(browser.import_finished, timeout=15000) as done:
        worker = browser.import_files([str(png)])
        assert worker is browser.import_worker
        assert browser.note_label.text() == "importing lesion.png…"
        assert not browser.import_btn.isEnabled() and not browser.import_dir_btn.isEnabled()
        assert _ids(browser) == before  # returned before the new row exists
        QTimer.singleShot(50, ticked.set)
    assert threads and threads[0] is not threading.main_thread()
    [new_id] = done.args[0]
    assert _ids(browser) == [*before, new_id] and _buttons_enabled(browser)
    assert browser.note_label.text() == "imported 1 image(s) from lesion.png"


def test_series_dialog_lists_the_series_main_first_and_gives_the_chosen(qtbot, tmp_path):
    _study(tmp_path / "export")
    listing = _case.list_series(tmp_path / "export")
    dialog = QtSeriesDialog(tmp_path / "export", listing)
    qtbot.addWidget(dialog)
    table = dialog.table
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == [
        "Axial  (main)",
        "Coronal",
        "Scout",
    ]
    assert [table.item(r, 1).text() for r in range(3)] == ["6", "3", "1"]
    assert [table.item(r, 3).text() for r in range(3)] == ["2", "3", "1"]
    assert table.item(0, 2).text() == "CT" and table.isColumnHidden(5)  # no problem column
    assert dialog.chosen() == [0]  # the main one, preselected
    dialog.select([1, 2])
    assert dialog.chosen() == [1, 2]
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    dialog.select([])
    assert not ok.isEnabled()
    dialog.select([1])
    ok.click()
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.chosen() == [1]


def _import(browser, qtbot, folder, answer):
    """Import ``folder`` with ``answer`` as the user's pick; the listings shown, the new ids."""
    shown = []

    def choose(_folder, listing):
        shown.append(listing)
        return answer

    browser.choose_series = choose
    with qtbot.waitSignal(browser.import_finished, timeout=10000) as done:
        browser.import_folder(folder)
    assert _buttons_enabled(browser)
    return shown, done.args[0]


def test_import_folder_imports_the_series_picked_in_the_dialog(
    browser, tmp_path, qtbot, monkeypatch
):
    folder = tmp_path / "export"
    uids = _study(folder)
    shown, [coronal] = _import(browser, qtbot, folder, [1])
    assert [s["label"] for s in shown[0]] == ["Axial", "Coronal", "Scout"]
    rec = browser.study.image(coronal)
    assert rec.meta["series"]["uid"] == uids["Coronal"] and rec.meta["series"]["n_slices"] == 3
    assert len([p for p in rec.path.rglob("*") if p.is_file()]) == 3  # its slices only
    assert read_image(rec.path).meta["n_slices"] == 3 and browser.row_of(coronal) is not None

    _, ids = _import(browser, qtbot, folder, [0, 1])  # two series: two images
    recs = [browser.study.image(i) for i in ids]
    assert [r.meta["series"]["uid"] for r in recs] == [uids["Axial"], uids["Coronal"]]
    assert all(browser.row_of(i) is not None for i in ids)
    note = browser.note_label.text()
    assert note.startswith("imported 2 series") and "1 other series left out: 'Scout'" in note

    before = _ids(browser)
    _, ids = _import(browser, qtbot, folder, None)  # cancelled
    assert ids == [] and _ids(browser) == before and "cancelled" in browser.note_label.text()
    shown = []  # the real dialog, closed with Cancel
    monkeypatch.setattr(QtSeriesDialog, "exec", lambda d: shown.append(d.chosen()) or 0)
    browser.choose_series = browser._ask_series
    with qtbot.waitSignal(browser.import_finished, timeout=10000) as done:
        browser.import_folder(folder)
    assert shown == [[0]] and done.args == [[]] and _ids(browser) == before

    _make_series(tmp_path / "single", list(range(4)))  # one series: no dialog
    shown, [single] = _import(browser, qtbot, tmp_path / "single", [99])
    assert shown == [] and browser.study.image(single).meta["series"]["n_slices"] == 4
