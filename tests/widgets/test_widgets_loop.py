"""The whole loop on the sample study, through the docks as a user drives them:
open -> explain -> edit the mask -> accept -> fine-tune the selected version (quick
preset, a few steps) -> the new version is offered beside the current one, not
promoted -> promote -> revert; an expert mask stays in the Labels layer."""

from __future__ import annotations

import json
import subprocess
import sys

from napari_wsseg.training.promotion import current_version
from napari_wsseg.widgets import _case
from napari_wsseg.widgets._explain import COMPARE_KEY, PREDICTION_KEY
from napari_wsseg.widgets._layerdata import MAP_KEY
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_explain import QtExplain
from napari_wsseg.widgets.qt_retrain import QtRetrain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


def test_open_explain_edit_accept_finetune_compare_promote_revert(
    make_napari_viewer, qtbot, trained_copy
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
    # the browser tells a correction apart from an expert mask
    assert browser.table.item(browser.row_of(rec.id), 4).text() == "corrected"

    # Retrain fine-tunes the version selected in Explain, with its config
    qtbot.waitUntil(lambda: retrain._plan is not None and retrain.settings.rowCount() > 0,
                    timeout=30_000)  # fmt: skip
    assert retrain.parent_path() == v001 and retrain.preset.currentText() == "quick"
    assert retrain.run_stages() == ["unet"]  # the corrected mask changes the U-Net only
    keys = {retrain.settings.item(r, 0).text() for r in range(retrain.settings.rowCount())}
    assert "image_size" not in keys and "unet_steps" in keys  # training length only
    assert "steps" in retrain.eta.text()
    retrain.steps.setValue(2)
    retrain.start()
    job = retrain.job
    qtbot.waitUntil(lambda: not job.running and not retrain.timer.isActive(), timeout=120_000)
    assert job.events[-1]["event"] == "done", job.log_tail()
    spec = json.loads((job.run_dir / "job.json").read_text())
    parent_info = json.loads((trained_copy / "models/manifold/v001/info.json").read_text())
    assert spec["parent"] == v001 and spec["config"] == parent_info["config"]
    snapshot = json.loads((job.run_dir / "snapshot.json").read_text())
    item = next(it for it in snapshot["items"] if it["image_id"] == rec.id)
    assert item["mask"] == str(corr.path)
    v002 = trained_copy / "models" / "manifold" / "v002"
    assert job.events[-1]["version_dir"] == str(v002) and (v002 / "held_out.json").exists()
    v002_info = json.loads((v002 / "info.json").read_text())
    assert v002_info["config"] == parent_info["config"]

    # the new version is offered beside the current one, not promoted: overlays of both
    qtbot.waitUntil(lambda: explain.models.count() == 2, timeout=20_000)
    assert explain.models.currentData()["path"] == v001
    qtbot.waitUntil(lambda: explain.compare.new is not None, timeout=20_000)
    assert explain.compare.new["path"] == str(v002) and not explain.compare.isHidden()
    assert current_version(v002.parent) == "v001"
    qtbot.waitUntil(lambda: bool(_compare_layers(viewer)), timeout=60_000)
    assert all("v002" in ly.name for ly in _compare_layers(viewer))
    assert _case.mask_layer(viewer).metadata["wsseg_source"] == "corrected"  # kept
    qtbot.waitUntil(lambda: "…" not in _cell_texts(explain.compare.table), timeout=60_000)

    # promote, then revert in one click; the pointer survives a new dock
    explain.compare.promote()
    assert current_version(v002.parent) == "v002"
    assert explain.models.currentData()["path"] == str(v002) and not _compare_layers(viewer)
    assert explain.compare.revert_btn.text() == "Revert to v001"
    explain.compare.revert()
    assert current_version(v002.parent) == "v001"
    assert QtExplain(viewer).models.currentData()["path"] == v001

    # an expert mask is never replaced by auto-explain: the prediction is its own layer
    explain.on_open.setChecked(True)
    expert = next(r for r in study.images("skin") if r.mask_status == "expert")
    stored = study.load_mask(study.latest_accepted_mask(expert.id).id)
    browser.open_image(expert.id)
    qtbot.waitUntil(
        lambda: any(ly.metadata.get(PREDICTION_KEY) for ly in viewer.layers), timeout=60_000
    )
    qtbot.waitUntil(explain.run_btn.isEnabled, timeout=60_000)
    mask = _case.mask_layer(viewer)
    assert mask.metadata["wsseg_source"] == "expert" and (mask.data == stored).all()
    assert mask.metadata["wsseg_parent"] == study.latest_accepted_mask(expert.id).id


def _compare_layers(viewer) -> list:
    return [ly for ly in viewer.layers if ly.metadata.get(COMPARE_KEY)]


def _cell_texts(table) -> str:
    return " ".join(
        table.item(r, c).text() for r in range(table.rowCount()) for c in range(3)
        if table.item(r, c) is not None
    )  # fmt: skip


def test_import_napari_wsseg_and_docks_do_not_import_torch():
    code = (
        "import sys, napari_wsseg, napari_wsseg.launch\n"
        "from napari_wsseg.widgets import qt_study_browser, qt_explain, qt_correct, qt_retrain\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
