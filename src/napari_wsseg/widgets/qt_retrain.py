"""Retrain dock: fine-tune a model version (or train a new one) in a background job.

By default the job continues the version selected in Explain, with its architecture:
only training-length settings are offered, the preset picks the stages to rerun and
their length, and the estimate comes from that version's measured step time.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_wsseg.methods import METHOD_MODALITY
from napari_wsseg.widgets import _case, _correct, _retrain, _slots, qt_layout
from napari_wsseg.widgets.qt_loss_plot import QtLossPlot
from napari_wsseg.widgets.qt_retrain_plan import SCRATCH, PlanMixin

if TYPE_CHECKING:
    import napari


__all__ = ["SCRATCH", "QtRetrain"]


class QtRetrain(PlanMixin, QWidget):
    """Train the chosen method on the study's expert masks plus weak labels, in a process."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.job: _retrain.Job | None = None
        self.last_run = None
        self._attached_study: str | None = None
        self._filtered = None
        self._defaults: dict[str, object] = {}
        self._plan: dict | None = None
        self.method = QComboBox()
        self.method.addItems(list(METHOD_MODALITY))
        self.parent_box = QComboBox()
        self.parent_box.setToolTip(
            "fine-tune this version (its architecture and config), or train a new model"
        )
        self.preset = QComboBox()
        self.preset.addItems(["quick", "paper"])
        self.preset.setToolTip("quick: minutes on a laptop CPU; paper: the paper's config (GPU)")
        self.stages = QListWidget()
        self.stages.setMaximumHeight(70)
        self.eta = QLabel("")
        self.eta.setWordWrap(True)
        self.steps = QSpinBox()
        self.steps.setRange(0, 1_000_000)
        self.steps.setSpecialValueText("preset")
        self.steps.setToolTip("steps of every stage that runs (0: the preset's)")
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 100_000)
        self.epochs.setSpecialValueText("(use steps)")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.settings = QTableWidget(0, 2)
        self.settings.setHorizontalHeaderLabels(["setting", "value"])
        self.counts = QLabel("")
        self.start_btn = QPushButton("Start")
        self.cancel_btn = QPushButton("Cancel")
        self.resume_btn = QPushButton("Resume")
        self.progress = QProgressBar()
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.plot = QtLossPlot()
        self.jobs = QListWidget()
        self.jobs.setMaximumHeight(90)
        self.timer = QTimer(self)
        self.timer.setInterval(500)

        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("start from", self.parent_box)
        form.addRow("preset", self.preset)
        form.addRow("stages to run", self.stages)
        form.addRow("steps", self.steps)
        form.addRow("epochs", self.epochs)
        form.addRow("device", self.device)
        buttons = QHBoxLayout()
        for b in (self.start_btn, self.cancel_btn, self.resume_btn):
            buttons.addWidget(b)
        lay = qt_layout.scroll_layout(self)
        lay.addLayout(form)
        self.settings_label = QLabel("settings:")
        lay.addWidget(self.settings_label)
        lay.addWidget(self.settings)
        lay.addWidget(self.counts)
        lay.addWidget(self.eta)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.plot)
        lay.addWidget(self.status)
        lay.addWidget(QLabel("jobs of this study (double-click to follow):"))
        lay.addWidget(self.jobs)
        self.cancel_btn.setEnabled(False)
        self.resume_btn.setEnabled(False)

        self.method.currentTextChanged.connect(self._method_changed)
        self.parent_box.currentIndexChanged.connect(lambda _i: self._replan())
        self.preset.currentTextChanged.connect(lambda _t: self._replan())
        self.steps.valueChanged.connect(lambda _v: self._show_eta())
        self.device.currentTextChanged.connect(lambda _t: self._show_eta())
        self.stages.itemChanged.connect(lambda _i: self._show_eta())
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.resume_btn.clicked.connect(self.resume)
        self.timer.timeout.connect(self.poll)
        self.jobs.itemDoubleClicked.connect(
            lambda item: self.follow(item.data(Qt.ItemDataRole.UserRole))
        )
        viewer.layers.events.inserted.connect(self._layer_added)
        _slots.case_opened(viewer).connect(lambda _e: self._follow_case())  # layers reused
        self._method_changed(self.method.currentText())
        self._follow_case()

    # --- settings ------------------------------------------------------------
    def _layer_added(self, event) -> None:
        self._follow_case()
        if event.value.metadata.get("wsseg_role") == "mask":  # a stored version changes counts
            event.value.events.metadata.connect(lambda _e: self._update_counts())

    def _follow_case(self) -> None:
        case = _case.current_case(self.viewer)
        if case is None:
            return
        for name, mod in METHOD_MODALITY.items():
            if mod == case["modality"] and self.method.currentText() != name:
                self.method.setCurrentText(name)
        self._update_counts()
        self.refresh_jobs()

    def refresh_jobs(self) -> None:
        """List the study's training jobs, running or finished (they outlive the dock)."""
        case = _case.current_case(self.viewer)
        self.jobs.clear()
        jobs = _retrain.list_jobs(case["study"]) if case else []
        for run_dir, state in jobs:
            item = QListWidgetItem(f"{run_dir.name}: {state}")
            item.setData(Qt.ItemDataRole.UserRole, str(run_dir))
            self.jobs.addItem(item)
        if case is not None and self._attached_study != case["study"]:
            self._attached_study = case["study"]
            self._reattach(jobs)

    def _reattach(self, jobs: list) -> None:
        """On opening a study: follow a job still running (started before a restart), or
        say which version a job finished meanwhile (offered in Explain, not promoted)."""
        if self.job is not None:
            return
        running = [d for d, state in jobs if state == "running"]
        if running:
            self.follow(str(running[0]))
            self.status.setText(f"re-attached to {running[0].name}, still training")
            return
        done = _retrain.unreviewed_version(jobs)
        if done is not None:
            run_dir, version = done
            self.status.setText(
                f"{run_dir.name} finished: {version.parent.name} {version.name} is offered "
                "in Explain beside the current version (not promoted)"
            )

    # --- the viewer's life ----------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._filtered_window():
            window.installEventFilter(self)  # the main window's close asks about the job
            self._filtered = weakref.ref(window)  # a strong one would keep the window alive

    def _filtered_window(self):
        return self._filtered() if self._filtered is not None else None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt)
        if event.type() == QEvent.Type.Close and obj is self._filtered_window():
            if self.job is not None and self.job.running:
                choice = self.ask_on_close()
                if choice == "cancel":
                    event.ignore()
                    return True
                _retrain.on_viewer_close(self.job, choice)
        return False

    def ask_on_close(self) -> str:
        """Ask what happens to the running job: ``keep``, ``stop`` or ``cancel``."""
        box = QMessageBox(self)
        box.setWindowTitle("Training job running")
        box.setText(
            f"{self.job.run_dir.name} is still training. Keep it training in the "
            "background (the Retrain dock re-attaches to it at the next launch), or stop "
            "it (a checkpoint is saved; Resume continues it)?"
        )
        keep = box.addButton("Keep training in the background", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop it", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return {id(keep): "keep", id(stop): "stop"}.get(id(box.clickedButton()), "cancel")

    def follow(self, run_dir: str) -> None:
        """Show a job found on disk: follow it if it runs, else offer Resume."""
        self.job = _retrain.attach(run_dir)
        self.plot.clear()
        for ev in self.job.events:
            self._show_event(ev)
        if self.job.running:
            self._running(clear=False)
        else:
            self._finished()

    def _method_changed(self, name: str) -> None:
        self.refresh_parents()
        self._update_counts()

    def _fill_settings(self, name: str, defaults: dict) -> None:
        if name != self.method.currentText():
            return
        self._defaults = defaults
        self.settings.setRowCount(len(defaults))
        for row, (key, value) in enumerate(defaults.items()):
            k = QTableWidgetItem(key)
            k.setFlags(k.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.settings.setItem(row, 0, k)
            self.settings.setItem(row, 1, QTableWidgetItem(str(value)))
        qt_layout.fit_rows(self.settings, min(len(defaults), 4), max_rows=len(defaults))

    def set_setting(self, key: str, value: object) -> None:
        """Change one config value (as typed in the table)."""
        for row in range(self.settings.rowCount()):
            if self.settings.item(row, 0).text() == key:
                self.settings.item(row, 1).setText(str(value))
                return
        raise KeyError(f"{self.method.currentText()} has no setting {key!r}")

    def changed_settings(self) -> dict[str, str]:
        """Settings that differ from the plan's values (passed as --set)."""
        out = {}
        for row in range(self.settings.rowCount()):
            key, text = self.settings.item(row, 0).text(), self.settings.item(row, 1).text()
            if text != str(self._defaults.get(key)):
                out[key] = text
        return out

    def _update_counts(self) -> None:
        case = _case.current_case(self.viewer)
        if case is None:
            self.counts.setText("open a study case to train on its study")
            return
        study = _correct.study_at(case["study"])
        c = _retrain.study_counts(study, METHOD_MODALITY[self.method.currentText()])
        self.counts.setText(
            f"{c['expert_masks']} expert masks + {c['weak_only']} weakly labelled images "
            f"({c['images']} images)"
        )

    # --- job -----------------------------------------------------------------
    def start(self) -> None:
        """Launch the job for the case's study."""
        case = _case.current_case(self.viewer)
        if case is None:
            self.status.setText("open a study case first")
            return
        if self._plan is None:
            self.status.setText("still planning the job; try again in a moment")
            return
        parent = self.parent_path()
        stages = self.run_stages()
        if not stages:
            self.status.setText("pick at least one stage to run")
            return
        settings = self.changed_settings()
        if not parent:  # a new model: the preset's settings travel whole
            settings = {
                self.settings.item(r, 0).text(): self.settings.item(r, 1).text()
                for r in range(self.settings.rowCount())
            }
            settings = {k: v for k, v in settings.items() if k in self._changed_from_paper()}
        self.job = _retrain.start(
            case["study"],
            self.method.currentText(),
            settings,
            self.steps.value() or None,
            self.device.currentText(),
            epochs=self.epochs.value() or None,
            parent=parent or None,
            preset=self.preset.currentText(),
            stages=stages,
        )
        self._running()

    def resume(self) -> None:
        if self.last_run is not None:
            self.job = _retrain.resume(self.last_run)
            self._running()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("stopping after the current step…")

    def _running(self, clear: bool = True) -> None:
        if clear:
            self.plot.clear()
        self.progress.setRange(0, 0)
        self.start_btn.setEnabled(False)
        self.resume_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"started {self.job.run_dir.name}")
        self.timer.start()
        self.refresh_jobs()

    def poll(self) -> None:
        """Read new progress lines; finish up when the process has ended."""
        if self.job is None:
            return
        ended = not self.job.running  # read before polling: no line can follow the exit
        for ev in self.job.poll():
            self._show_event(ev)
        if ended:
            self._finished()

    def _show_event(self, ev: dict) -> None:
        if ev.get("event", "step") == "step":
            total = int(ev.get("total_steps") or 0)
            if total:
                self.progress.setRange(0, total)
                self.progress.setValue(int(ev.get("step", 0)))
        self.plot.add_event(ev)
        self.status.setText(_retrain.summary(ev))

    def _finished(self) -> None:
        self.timer.stop()
        self.plot.redraw()
        code = self.job.returncode()
        last = self.job.events[-1] if self.job.events else {}
        self.last_run = self.job.run_dir
        self.start_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        if last.get("event") == "done" and code == 0:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
        elif self.progress.maximum() == 0:  # still the busy indicator: no step was seen
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        elif last.get("event") == "cancelled":  # where it stopped, not a full bar
            self.progress.setValue(int(last.get("step", self.progress.value())))
        self.refresh_jobs()
        if last.get("event") == "done" and code == 0:
            version = Path(last.get("version_dir") or "").name
            self.status.setText(
                f"done: new model {version}, offered in Explain beside the current one "
                "(not promoted)"
            )
            self.refresh_parents()
        elif last.get("event") == "cancelled":
            self.resume_btn.setEnabled(True)
            self.status.setText("cancelled: checkpoint saved, Resume continues")
        else:
            self.resume_btn.setEnabled(True)
            self.status.setText(f"job ended with code {code}: {self.job.log_tail(400)}")
