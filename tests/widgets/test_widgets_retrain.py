"""Retrain dock: a real ``wsseg train`` process, live progress, cancel, resume, new version."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from napari_wsseg.widgets import _retrain
from napari_wsseg.widgets._retrain import attach
from napari_wsseg.widgets.qt_explain import QtExplain
from napari_wsseg.widgets.qt_retrain import QtRetrain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


@pytest.fixture
def docks(make_napari_viewer, trained_copy):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    explain = QtExplain(viewer)
    retrain = QtRetrain(viewer)
    browser.open_study(trained_copy)
    browser.open_image(browser.study.images("skin")[0].id)
    yield viewer, browser, explain, retrain
    for run in (trained_copy / "runs").glob("*"):  # never leave a job running
        job = attach(run)
        if job.running:
            job.cancel()


def _steps(job) -> list[dict]:
    return [e for e in job.events if e.get("event") == "step"]


def test_start_cancel_resume_then_new_version_offered(docks, qtbot, trained_copy, tiny_sets):
    viewer, browser, explain, retrain = docks
    assert retrain.method.currentText() == "manifold"  # follows the case's modality
    qtbot.waitUntil(lambda: retrain.settings.rowCount() > 0, timeout=30_000)
    assert "expert masks" in retrain.counts.text()
    explain.auto.setChecked(False)
    # a different architecture is an explicit choice: a new model from scratch
    assert retrain.parent_path().endswith("v001")  # fine-tunes the selected version by default
    retrain.set_parent("")
    qtbot.waitUntil(lambda: retrain._plan is not None and retrain.settings.rowCount() > 3)
    for key, value in tiny_sets["manifold"].items():
        retrain.set_setting(key, value)
    assert retrain.changed_settings()["image_size"] == "32"
    retrain.steps.setValue(8)
    retrain.start()
    job = retrain.job
    assert job.running and not retrain.start_btn.isEnabled()
    if hasattr(os, "getpriority"):  # the job yields the CPU to the viewer
        with contextlib.suppress(ProcessLookupError):  # (tiny steps may be done already)
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, job.proc.pid) == min(19, mine + _retrain.NICE)
    # cancel at once: tiny steps finish in milliseconds, so waiting for one to show
    # first races the job's end; the request is read after the first step, always
    retrain.cancel()
    assert "stopping" in retrain.status.text()
    qtbot.waitUntil(lambda: not job.running and not retrain.timer.isActive(), timeout=60_000)
    assert job.events[-1]["event"] == "cancelled" and job.proc.returncode == 3, job.log_tail()
    assert retrain.progress.maximum() == _steps(job)[0]["total_steps"] == 24  # 3 stages
    assert retrain.progress.value() == 1 and retrain.plot.points
    assert (job.run_dir / "checkpoint.pt").exists()
    assert not (job.run_dir / "stop.request").exists()  # acted on, so resume runs on
    assert retrain.resume_btn.isEnabled() and "cancelled" in retrain.status.text()
    stopped_at = job.events[-1]["step"]
    assert stopped_at == 1
    assert retrain.jobs.count() == 1 and "cancelled" in retrain.jobs.item(0).text()

    # the job outlives its dock: a reopened dock lists it and resumes it
    retrain.close()
    retrain.deleteLater()
    retrain = QtRetrain(viewer)
    assert retrain.jobs.count() == 1 and "cancelled" in retrain.jobs.item(0).text()
    retrain.follow(str(job.run_dir))
    assert retrain.resume_btn.isEnabled() and retrain.plot.points
    retrain.resume()
    job2 = retrain.job
    assert job2.run_dir == job.run_dir
    qtbot.waitUntil(lambda: not job2.running and not retrain.timer.isActive(), timeout=90_000)
    done = job2.events[-1]
    assert done["event"] == "done", job2.log_tail()
    assert min(e["step"] for e in _steps(job2)) == stopped_at + 1  # continued, not restarted
    assert retrain.progress.value() == retrain.progress.maximum()
    vdir = trained_copy / "models" / "manifold" / "v002"
    assert done["version_dir"] == str(vdir) and (vdir / "weights.pt").exists()
    assert json.loads((vdir / "info.json").read_text())["config"]["image_size"] == 32
    assert "v002" in retrain.status.text() and "done" in retrain.jobs.item(0).text()
    qtbot.waitUntil(lambda: explain.models.count() == 2, timeout=10_000)
    assert explain.models.itemData(0)["version"] == "v002"
