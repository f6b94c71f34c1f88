"""The browser's PACS dialog against a real Orthanc: search, retrieve with labels and
a progress bar, send the accepted mask back; errors shown, nothing half-imported."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsseg.study import Study
from napari_wsseg.widgets import _pacs
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser

pytestmark = pytest.mark.gui


@pytest.fixture
def browser(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_study(tmp_path / "study")
    return widget


def test_search_retrieve_and_send_back_from_the_dialog(browser, orthanc, qtbot):
    server, uids = orthanc
    dialog = browser.open_pacs()
    assert dialog.server.currentText() == "test-pacs"
    dialog.patient.setText("P-CT")
    with qtbot.waitSignal(dialog.searched, timeout=20000) as found:
        dialog.search()
    assert found.args == [1]
    assert [dialog.table.item(0, c).text() for c in range(4)] == [
        "P-CT",
        "ACC-CT",
        "2026-11-03",
        "CT",
    ]
    dialog.select([0])
    dialog.labels.setText("pdac=1")
    with qtbot.waitSignal(dialog.retrieved, timeout=30000) as got:
        dialog.retrieve_selected()
    [image_id] = got.args[0]
    assert dialog.progress.value() == dialog.progress.maximum() == 6
    assert browser.table.rowCount() == 1
    rec = browser.study.image(image_id)
    assert rec.labels == {"pdac": 1.0} and rec.meta["pacs"]["series_uid"] == uids["ct_series"]

    with Study.open(browser.study.root) as study:
        shape = tuple(rec.meta["shape"])
        mask = np.zeros(shape, np.uint8)
        mask[2:4, 30:60, 30:60] = 1
        study.save_mask(image_id, mask, "expert", author="Doe^Jane")
    dialog.image_id = image_id
    with qtbot.waitSignal(dialog.stored, timeout=20000) as sent:
        dialog.store()
    assert sent.args[0].startswith(f"sent mask v1 of image {image_id} as DICOM SEG")
    assert [h["modality"] for h in _pacs.search("test-pacs", {"patient": "P-CT"})] == ["CT", "SEG"]


def test_a_dead_server_is_reported_and_leaves_the_study_unchanged(browser, orthanc, qtbot):
    server, _ = orthanc
    dialog = browser.open_pacs()
    dialog.modality.setCurrentText("CR")
    with qtbot.waitSignal(dialog.searched, timeout=20000):
        dialog.search()
    dialog.select([0])
    server.kill()
    with qtbot.waitSignal(dialog.retrieved, timeout=30000) as got:
        dialog.retrieve_selected()
    assert got.args == [[]]
    assert "retrieval failed: PACS 'test-pacs'" in dialog.status.text()
    assert browser.study.images() == [] and browser.study.check() == []
    # the buttons come back when the worker has finished (just after 'retrieved')
    qtbot.waitUntil(dialog.search_btn.isEnabled, timeout=10000)


def test_labels_are_parsed_with_clear_errors():
    assert _pacs.parse_labels("pdac=1, cardiomegaly; edema=0") == {
        "pdac": 1.0,
        "cardiomegaly": 1.0,
        "edema": 0.0,
    }
    with pytest.raises(ValueError, match="expected name or name=0/1"):
        _pacs.parse_labels("pdac=yes")
