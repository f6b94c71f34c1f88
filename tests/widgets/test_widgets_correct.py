"""Correct dock: dirty flag, Accept with author and parent, predicted -> corrected chain,
versions list, view/restore that never overwrite, live threshold."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsseg.methods.base import Maps
from napari_wsseg.widgets import _case, _explain
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


@pytest.fixture
def docks(make_napari_viewer, study_copy):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    correct = QtCorrect(viewer)
    browser.open_study(study_copy)
    correct.author.setText("dr-test")
    return viewer, browser, correct


def _skin_with_mask(study):
    return next(r for r in study.images("skin") if study.latest_accepted_mask(r.id))


def test_paint_then_accept_stores_child_version(docks):
    viewer, browser, correct = docks
    study = browser.study
    rec = _skin_with_mask(study)
    browser.open_image(rec.id)
    before = study.mask_versions(rec.id)
    parent = study.latest_accepted_mask(rec.id)
    mask = _case.mask_layer(viewer)
    mask.paint((3, 3), 1)
    assert _case.has_unsaved_edits(viewer)
    vid = correct.accept()
    after = study.mask_versions(rec.id)
    assert len(after) == len(before) + 1
    new = study.mask_version(vid)
    assert (new.source, new.author, new.parent) == ("corrected", "dr-test", parent.id)
    assert np.array_equal(study.load_mask(vid), np.asarray(mask.data))
    assert not _case.has_unsaved_edits(viewer)
    assert correct.list.count() == len(after)
    assert correct.list.item(0).text().startswith(f"#{vid} ")  # newest first


def _predicted(viewer, prob):
    case = _case.current_case(viewer)
    maps = Maps(maps={"mask_prob": prob}, mask="mask_prob", threshold=0.5)
    entry = {"method": "manifold", "path": "/models/manifold/v009"}
    _explain.show_maps(viewer, maps, entry, case)
    return _case.mask_layer(viewer)


def test_prediction_edit_accept_stores_predicted_then_corrected(docks):
    viewer, browser, correct = docks
    study = browser.study
    rec = next(r for r in study.images("skin") if study.latest_accepted_mask(r.id) is None)
    browser.open_image(rec.id)
    shape = _case.current_case(viewer)["image"].spatial_shape
    prob = np.linspace(0, 1, np.prod(shape)).reshape(shape).astype(np.float32)
    mask = _predicted(viewer, prob)
    assert np.array_equal(mask.data, prob >= 0.5)
    mask.paint((0, 0), 1)  # the user adds a pixel the model missed
    vid = correct.accept()
    pred, corr = study.mask_versions(rec.id)[-2:]
    assert corr.id == vid and corr.parent == pred.id
    assert (pred.source, pred.model_version) == ("predicted", "/models/manifold/v009")
    assert corr.source == "corrected" and corr.author == "dr-test"
    assert study.load_mask(pred.id)[0, 0] == 0 and study.load_mask(corr.id)[0, 0] == 1
    assert np.array_equal(study.load_mask(pred.id), prob >= 0.5)
    # the browser's mask column says corrected (not expert) for this case
    from napari_wsseg.widgets.qt_study_browser import COLUMNS

    browser.refresh()
    cell = browser.table.item(browser.row_of(rec.id), COLUMNS.index("mask"))
    assert cell.text() == "corrected"
    expert = next(r for r in study.images("skin") if r.mask_status == "expert")
    assert browser.table.item(browser.row_of(expert.id), COLUMNS.index("mask")).text() == "expert"


def test_threshold_slider_updates_prediction_live_until_edited(docks):
    viewer, browser, correct = docks
    # a case without a stored mask: a prediction goes to the Labels layer only there
    rec = next(r for r in browser.study.images("skin") if r.mask_status == "none")
    browser.open_image(rec.id)
    shape = _case.current_case(viewer)["image"].spatial_shape
    prob = np.random.default_rng(0).random(shape).astype(np.float32)
    mask = _predicted(viewer, prob)
    correct.set_threshold(0.8)
    assert np.array_equal(mask.data, prob >= 0.8)
    correct.set_threshold(0.2)
    assert np.array_equal(mask.data, prob >= 0.2)
    mask.paint((1, 1), 0)
    edited = np.array(mask.data)
    correct.set_threshold(0.6)  # an edited mask is not re-cut
    assert np.array_equal(mask.data, edited)
    assert "edited" in correct.status.text() or "unedited" in correct.status.text()


def test_view_and_restore_never_overwrite(docks):
    viewer, browser, correct = docks
    study = browser.study
    rec = _skin_with_mask(study)
    browser.open_image(rec.id)
    first = study.latest_accepted_mask(rec.id)
    mask = _case.mask_layer(viewer)
    mask.paint((2, 2), 1)
    mask.paint((int(mask.data.shape[0] / 2), int(mask.data.shape[1] / 2)), 0)
    second = correct.accept()
    files = {v.id: v.path.read_bytes() for v in study.mask_versions(rec.id)}
    n = len(files)
    # view an earlier version: shown, nothing written
    row = next(
        i
        for i in range(correct.list.count())
        if correct.list.item(i).text().startswith(f"#{first.id} ")
    )
    correct.list.setCurrentRow(row)
    correct.view_selected()
    assert np.array_equal(mask.data, study.load_mask(first.id))
    assert len(study.mask_versions(rec.id)) == n
    # restore it: a new version with the same pixels, parent = the restored one
    correct.restore_selected()
    versions = study.mask_versions(rec.id)
    assert len(versions) == n + 1
    new = versions[-1]
    assert new.parent == first.id and new.source == "corrected"
    assert np.array_equal(study.load_mask(new.id), study.load_mask(first.id))
    assert study.latest_accepted_mask(rec.id).id == new.id != second
    for v in versions[:-1]:
        assert v.path.read_bytes() == files[v.id]
    assert correct.list.count() == n + 1
