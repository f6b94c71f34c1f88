"""Explain dock: run a model version on the case on screen and overlay what it returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QFileSystemWatcher, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_wsseg.widgets import _case, _compare, _display, _explain, _live, qt_layout, qt_workers
from napari_wsseg.widgets._slots import case_opened
from napari_wsseg.widgets.qt_compare import QtCompare
from napari_wsseg.widgets.qt_suggest import QtSuggest

if TYPE_CHECKING:
    import napari


class QtExplain(QWidget):
    """Pick a model version, press Explain: maps, boxes, mask and probabilities appear."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.worker = None
        self._watched: str | None = None
        self.models = QComboBox()
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.run_btn = QPushButton("Explain")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.auto = QCheckBox("show a new version's overlays beside the current ones")
        self.auto.setChecked(True)
        # off by default (a 3-view CT pass takes a while on a laptop); ``make run`` turns
        # it on so the sample study shows overlays at once
        self.on_open = QCheckBox("explain each case when it opens")
        self.on_open.setChecked(False)
        self._case_key: tuple | None = None
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self._run: _live.LiveRun | None = None  # progress / partial maps of the run
        self._run_ctx: tuple = ()
        self._activity = None  # napari progress in the activity panel, per streamed run
        self._poll = QTimer(self)
        self._poll.setInterval(500)
        self._poll.timeout.connect(lambda: self._run_ctx and self._show_live(*self._run_ctx))
        self.probs = QLabel("")
        self.probs.setWordWrap(True)
        self.ood = QLabel("")  # the out-of-distribution check, beside the probabilities
        self.ood.setWordWrap(True)
        self.watcher = QFileSystemWatcher(self)
        self.compare = QtCompare()
        self.suggest = QtSuggest(viewer)
        self._entries: list[dict] = []

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        lay = qt_layout.scroll_layout(self)
        lay.addWidget(QLabel("model version:"))
        lay.addWidget(self.models)
        lay.addWidget(self.metrics)
        lay.addWidget(self.compare)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.auto)
        lay.addWidget(self.on_open)
        lay.addWidget(QLabel("case-level probabilities:"))
        lay.addWidget(self.probs)
        lay.addWidget(self.ood)
        lay.addWidget(self.suggest)
        lay.addStretch()

        self.run_btn.clicked.connect(self.explain)
        self.cancel_btn.clicked.connect(self.cancel)
        self.models.currentIndexChanged.connect(self._show_metrics)
        self.watcher.directoryChanged.connect(self._models_changed)
        self.compare.decided.connect(self._decided)
        self.destroyed.connect(self.compare.quit_workers)
        viewer.layers.events.inserted.connect(lambda _e: self._layers_changed())
        case_opened(viewer).connect(lambda _e: self._layers_changed())  # layers reused
        viewer.dims.events.current_step.connect(lambda _e: _display.refresh(viewer))
        self._results: dict[tuple, tuple] = {}  # (study, image id) -> (maps, entry, probs)
        self.refresh_models()

    def refresh_models(self, select_current: bool = False) -> None:
        """List the model versions that fit the case's modality, newest first; the
        selection stays, else goes to the current (promoted) version, never to a new
        one (a new version is offered beside the current one, see :class:`QtCompare`)."""
        case = _case.current_case(self.viewer)
        keep = None if select_current else self.models.currentData()
        self.models.blockSignals(True)
        self.models.clear()
        self._entries = []
        if case is not None:
            self._entries = _explain.model_versions(case["study"], case["modality"])
            for entry in self._entries:
                self.models.addItem(entry["title"], entry)
            self._watch(case["study"])
        paths = [self.models.itemData(i)["path"] for i in range(self.models.count())]
        cur = _explain.current_entry(self._entries)
        if keep and keep["path"] in paths:
            idx = paths.index(keep["path"])
        else:
            idx = paths.index(cur["path"]) if cur else 0
        self.models.setCurrentIndex(idx)
        self.models.blockSignals(False)
        self._show_metrics()

    def selected(self) -> dict | None:
        """The version the user picked (what Retrain fine-tunes by default)."""
        return self.models.currentData()

    def _update_compare(self) -> dict | None:
        """Offer the newest unpromoted version beside the current one; returns it."""
        case = _case.current_case(self.viewer)
        entry = self.models.currentData()
        if case is None or entry is None:
            self.compare.set_pair(None, None, None)
            return None
        cur = _explain.current_entry(self._entries, entry["method"])
        new = _compare.offered(self._entries, entry["method"])
        self.compare.set_pair(case["study"], cur, new)
        return new

    def _decided(self) -> None:
        """After promote / keep / revert: select the current version, drop the
        comparison layers, explain with it."""
        for layer in list(self.viewer.layers):
            if layer.metadata.get(_explain.COMPARE_KEY):
                self.viewer.layers.remove(layer)
        self.refresh_models(select_current=True)
        self._update_compare()
        if _case.current_case(self.viewer) is not None and self.models.count():
            self.explain()

    def _layers_changed(self) -> None:
        self.refresh_models()
        case = _case.current_case(self.viewer)
        key = (case["study"], case["image_id"]) if case is not None else None
        if key == self._case_key:
            return  # a map or mask layer of the same case
        self._case_key = key
        if self._case_changed(key):
            return  # its overlays come back from the last run
        if key is not None and self.on_open.isChecked() and self.models.count():
            QTimer.singleShot(0, self.explain)  # after the case's other layers are in

    def explain(self, entry: dict | None = None, compare: bool = False) -> None:
        """Run the selected model (or ``entry``) on the case in a worker thread;
        ``compare`` shows its overlays beside the current ones."""
        case = _case.current_case(self.viewer)
        entry = entry or self.models.currentData()
        if case is None or entry is None:
            self.viewer.status = "open a case and train or pick a model version first"
            return
        self.progress.setRange(0, 0)
        self.probs.setText(f"explaining {_case.case_name(case)} with {entry['title']}…")
        self.ood.setText("")
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        if self._run is not None:
            self._run.cancel()  # a run still going (streamed) stops instead of competing
        self._run = run = _live.LiveRun()
        self._run_ctx = (run, entry, case)
        self._poll.start()
        # errors go to our handler (not re-raised on the Qt thread); the worker ends with
        # the dock (qt_workers)
        worker = qt_workers.build(
            self,
            _explain.explain_image,
            entry["path"],
            case["image"],
            case["study"],
            case["modality"],
            run,
            desc=f"explain {entry['title']}",
        )
        worker.returned.connect(
            lambda result, w=worker: self._show(*result, entry, case, w, compare)
        )
        worker.errored.connect(lambda err, w=worker: w is self.worker and self._failed(err))
        worker.finished.connect(lambda w=worker: w is self.worker and self._done())
        self.worker = worker
        worker.start()

    def cancel(self) -> None:
        """Stop the running explanation: a streaming one (slides) stops after its block
        and shows what is done; any other is dropped."""
        if self._run is not None and self._run.streaming and self.worker is not None:
            self._run.cancel()
            self.cancel_btn.setEnabled(False)
            return
        if self.worker is not None:
            qt_workers.stop(self.worker)
            self.worker = None
            self.probs.setText("cancelled: no probabilities for this case")
        self._done()

    def _show(
        self, maps, report: dict, entry: dict, case: dict, worker, compare: bool = False
    ) -> None:
        now = _case.current_case(self.viewer)
        if worker is not self.worker or now is None or now["image_id"] != case["image_id"]:
            return  # cancelled, superseded, or the user moved to another case
        text = "\n".join(f"{k}: {v:.3f}" for k, v in sorted(maps.probabilities.items()))
        if compare:  # a new version's overlays beside the current one's, not cached
            _explain.show_maps(self.viewer, maps, entry, case, compare=True)
            self.probs.setText(text)
            return
        if report.get("ood"):
            _case.tell_warning(f"{_case.case_name(case)}: {report['message']}")
        self._results[(case["study"], case["image_id"])] = (maps, entry, text, report)
        while len(self._results) > 4:
            self._results.pop(next(iter(self._results)))
        self._put(maps, entry, case, text, report)

    def _put(self, maps, entry: dict, case: dict, text: str, report: dict) -> None:
        _explain.show_maps(self.viewer, maps, entry, case)
        note = _explain.mark_ood(self.viewer, report)  # shown next to the probabilities
        self.probs.setText(text)
        self.ood.setText(note)
        warn = note.startswith("⚠")
        self.ood.setStyleSheet("color: #ffb000; font-weight: bold" if warn else "")

    def _case_changed(self, key: tuple | None) -> bool:
        """A new case on screen: the last one's work and numbers go; a case explained
        before gets its overlays back (reopening it used to drop them)."""
        if self.worker is not None:
            qt_workers.stop(self.worker)
            self.worker = None
            self._done()
        self.probs.setText("")
        self.ood.setText("")
        cached = self._results.get(key) if key is not None else None
        case = _case.current_case(self.viewer)
        if cached is not None and case is not None:
            QTimer.singleShot(0, lambda: self._restore(key, *cached))
            return True
        return False

    def _restore(self, key: tuple, maps, entry: dict, text: str, report: dict) -> None:
        case = _case.current_case(self.viewer)
        if case is not None and (case["study"], case["image_id"]) == key:
            self._put(maps, entry, case, text, report)

    def _show_live(self, run: _live.LiveRun, entry: dict, case: dict) -> None:
        p = run.progress
        if run is not self._run or p is None:
            return
        self.progress.setRange(0, max(1, p.total))
        self.progress.setValue(p.done)
        self.progress.setFormat(_live.progress_text(p))
        self.progress.setTextVisible(True)
        bar = self._activity
        if bar is None:
            from napari.utils import progress

            bar = self._activity = progress(total=max(1, p.total), desc=f"explain ({p.unit})")
        # a local: the update may process events, and _done may close the bar meanwhile
        bar.set_description(f"explain: {_live.progress_text(p)}")
        bar.update(p.done - bar.n)
        now = _case.current_case(self.viewer)
        if now is not None and now["image_id"] == case["image_id"]:
            _live.show_partial(self.viewer, run, entry["method"], case)

    def _failed(self, err: Exception) -> None:
        text = _explain.failure_text(err, self.models.currentData(), self._case_key)
        self.viewer.status = f"explain failed: {err}"
        self.probs.setText(f"error: {text}")
        _case.tell_error(text)

    def _done(self) -> None:
        self._poll.stop()
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        p = self._run.progress if self._run is not None else None
        self.progress.setFormat("%p%")
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if p is not None and p.cancelled:  # a streamed run keeps what it did
            self.progress.setRange(0, max(1, p.total))
            self.progress.setValue(p.done)
            self.progress.setFormat(f"cancelled: {p.done}/{p.total} {p.unit} kept")
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _show_metrics(self) -> None:
        entry = self.models.currentData()
        self.metrics.setText(_explain.describe(entry) if entry else "no model version yet")
        self._update_compare()

    def _watch(self, study: str) -> None:
        root = _explain.models_root(study)
        if self._watched == root:
            return
        if self._watched:
            self.watcher.removePaths(self.watcher.directories())
        _explain.ensure_dir(root)
        self._watched = root
        self._add_watches()

    def _add_watches(self) -> None:
        have = set(self.watcher.directories())
        new = [d for d in _explain.watch_dirs(self._watched) if d not in have]
        if new:
            self.watcher.addPaths(new)

    def _models_changed(self, _path: str) -> None:
        before = self.models.count()
        self._add_watches()
        self.refresh_models()
        new = self._update_compare()
        if self.models.count() > before and new is not None and self.auto.isChecked():
            self.explain(new, compare=True)
