"""The whole loop on the sample study, through the docks as a user drives them:
open -> explain -> edit the mask -> accept -> retrain a tiny job -> new version
offered -> overlays refresh."""

from __future__ import annotations

import json
import subprocess
import sys

from napari_wsseg.widgets import _case
from napari_wsseg.widgets._layerdata import MAP_KEY
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_explain import QtExplain
from napari_wsseg.widgets.qt_retrain import QtRetrain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


def test_open_explain_edit_accept_retrain_refresh(
    make_napari_viewer, qtbot, trained_copy, tiny_sets
):
    viewer = make_napari_viewer()
    browser, explain = QtStudyBrowser(viewer), QtExplain(viewer)
    correct, retrain = QtCorrect(viewer), QtRetrain(viewer)
    for w in (browser, explain, correct, retrain):
        viewer.window.add_dock_widget(w)
    correct.author.setText("radiologist")

    # open: a skin case without an expert mask, by double-click in the table
    browser.open_study(trained_copy)
    study = browser.study
    rec = next(r for r in study.images("skin") if study.latest_accepted_mask(r.id) is None)
    browser.table.cellDoubleClicked.emit(browser.row_of(rec.id), 0)
    qtbot.waitUntil(lambda: browser.current_id == rec.id, timeout=10_000)  # read in a worker
    assert _case.current_case(viewer)["image_id"] == rec.id
    assert _case.mask_layer(viewer) is None

    # explain with the study's model version v001
    v001 = str(trained_copy / "models" / "manifold" / "v001")
    assert explain.models.currentData()["path"] == v001
    explain.explain()
    qtbot.waitUntil(explain.run_btn.isEnabled, timeout=60_000)
    maps = {ly.metadata[MAP_KEY] for ly in viewer.layers if MAP_KEY in ly.metadata}
    assert {"attention", "mask_prob"} <= maps
    mask = _case.mask_layer(viewer)
    assert mask.metadata["wsseg_model"] == v001 and mask.metadata["wsseg_source"] == "predicted"

    # edit the mask with the Labels tools, accept it
    mask.brush_size = 6
    for x in range(10, 40, 3):
        mask.paint((20, x), 1)
    assert _case.has_unsaved_edits(viewer)
    vid = correct.accept()
    pred, corr = study.mask_versions(rec.id)[-2:]
    assert (pred.source, corr.source, corr.id, corr.parent) == (
        "predicted",
        "corrected",
        vid,
        pred.id,
    )
    assert corr.author == "radiologist" and pred.model_version == v001
    assert browser.table.item(browser.row_of(rec.id), 4).text() == "expert"

    # retrain a tiny job from the dock; it trains on the corrected mask
    qtbot.waitUntil(lambda: retrain.settings.rowCount() > 0, timeout=30_000)
    for key, value in tiny_sets["manifold"].items():
        retrain.set_setting(key, value)
    retrain.steps.setValue(2)
    retrain.start()
    job = retrain.job
    qtbot.waitUntil(lambda: not job.running and not retrain.timer.isActive(), timeout=90_000)
    assert job.events[-1]["event"] == "done", job.log_tail()
    snapshot = json.loads((job.run_dir / "snapshot.json").read_text())
    item = next(it for it in snapshot["items"] if it["image_id"] == rec.id)
    assert item["mask"] == str(corr.path)
    v002 = trained_copy / "models" / "manifold" / "v002"
    assert job.events[-1]["version_dir"] == str(v002) and (v002 / "weights.pt").exists()

    # the new version is offered and the overlays refresh with it
    qtbot.waitUntil(lambda: explain.models.count() == 2, timeout=20_000)
    assert explain.models.currentData()["path"] == str(v002)
    qtbot.waitUntil(
        lambda: (
            (m := _case.mask_layer(viewer)) is not None
            and m.metadata.get("wsseg_model") == str(v002)
        ),
        timeout=60_000,
    )
    assert len([ly for ly in viewer.layers if MAP_KEY in ly.metadata]) == len(maps)
    assert [v.id for v in study.mask_versions(rec.id)][-2:] == [pred.id, corr.id]


def test_import_napari_wsseg_and_docks_do_not_import_torch():
    code = (
        "import sys, napari_wsseg, napari_wsseg.launch\n"
        "from napari_wsseg.widgets import qt_study_browser, qt_explain, qt_correct, qt_retrain\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
