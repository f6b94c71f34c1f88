"""A job and the viewer's life: a new dock re-attaches to a running job; closing the
viewer asks whether to keep the job training or to stop it."""

from __future__ import annotations

import weakref

from qtpy.QtGui import QCloseEvent

from napari_wsseg.widgets._retrain import attach
from napari_wsseg.widgets.qt_retrain import QtRetrain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


def test_reattach_to_running_job_and_stop_it_on_close(make_napari_viewer, qtbot, trained_copy):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    browser.open_study(trained_copy)
    browser.open_image(browser.study.images("skin")[0].id)
    retrain = QtRetrain(viewer)
    viewer.window.add_dock_widget(retrain, name="retrain")
    qtbot.waitUntil(lambda: retrain._plan is not None, timeout=30_000)
    retrain.steps.setValue(100_000)  # runs until stopped
    retrain.start()
    job = retrain.job
    try:
        qtbot.waitUntil(lambda: any(e.get("event") == "step" for e in job.poll() + job.events),
                        timeout=60_000)  # fmt: skip
        # a dock opened later (as after a restart) follows the running job by itself
        again = QtRetrain(viewer)
        viewer.window.add_dock_widget(again, name="again")
        assert again.job is not None and again.job.run_dir == job.run_dir
        assert again.timer.isActive() and "re-attached" in again.status.text()
        again.timer.stop()
        # closing the viewer asks; "cancel" keeps the window open, "stop" stops the job
        window = viewer.window._qt_window
        retrain._filtered = weakref.ref(window)
        retrain.ask_on_close = lambda: "cancel"
        event = QCloseEvent()
        assert retrain.eventFilter(window, event) and not event.isAccepted()
        assert job.running
        retrain.ask_on_close = lambda: "stop"
        assert not retrain.eventFilter(window, QCloseEvent())
        qtbot.waitUntil(lambda: not job.running, timeout=60_000)
        job.poll()
        assert job.events[-1]["event"] == "cancelled", job.log_tail()
    finally:
        retrain._filtered = None
        if attach(job.run_dir).running:
            job.cancel()
