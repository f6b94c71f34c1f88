"""The comparison panel of the Explain dock: a new version beside the current one.

Shown when a model version newer than the current one appears (a finished Retrain):
held-out scores side by side, its overlays on the case as separate layers, and the
user's decision: promote it, keep the current one, or later revert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_wsseg.widgets import _compare, qt_workers

if TYPE_CHECKING:
    pass


class QtCompare(QGroupBox):
    """Current vs new version; emits ``decided`` after a promotion, keep or revert."""

    decided = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("new model version", parent)
        self.current: dict[str, Any] | None = None
        self.new: dict[str, Any] | None = None
        self.study: str | None = None
        self._workers: list = []
        self._scoring: set[str] = set()
        self._scored_now: dict[str, dict] = {}
        # a version listed before its job wrote held_out.json: look again every second
        self._poll = QTimer(self)
        self._poll.setInterval(1000)
        self._poll.timeout.connect(self._recheck)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["", "current", "new"])
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(190)
        self.table.setMaximumHeight(200)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.promote_btn = QPushButton("Promote")
        self.keep_btn = QPushButton("Keep current")
        self.revert_btn = QPushButton("Revert")
        self.auto = QCheckBox("auto-promote a new version that is not worse on the held-out set")
        buttons = QHBoxLayout()
        for b in (self.promote_btn, self.keep_btn):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(self.note)
        lay.addLayout(buttons)
        lay.addWidget(self.auto)
        lay.addWidget(self.revert_btn)
        self.promote_btn.clicked.connect(self.promote)
        self.keep_btn.clicked.connect(self.keep)
        self.revert_btn.clicked.connect(self.revert)
        self.set_pair(None, None, None)

    def set_pair(self, study: str | None, current: dict | None, new: dict | None) -> None:
        """Show ``new`` beside ``current`` (``new`` None: only the revert button)."""
        self.study, self.current, self.new = study, current, new
        comparing = current is not None and new is not None
        for w in (self.table, self.note, self.promote_btn, self.keep_btn):
            w.setVisible(comparing)
        prev = _compare.previous(current) if current else None
        self.revert_btn.setVisible(prev is not None)
        self.revert_btn.setText(f"Revert to {prev}" if prev else "Revert")
        self.setTitle(
            f"{new['title']} (not promoted) vs {current['version']} (current)"
            if comparing
            else "model version"
        )
        self.setVisible(comparing or prev is not None)
        if not comparing:
            return
        self.promote_btn.setText(f"Promote {new['version']}")
        self.keep_btn.setText(f"Keep {current['version']}")
        for entry in (current, new):
            if entry["path"] in self._scored_now and _compare.scores_of(entry) is None:
                entry["held_out"] = self._scored_now[entry["path"]]
            # a new version is scored by its job (held_out.json follows its weights);
            # score here only the current one, and versions whose job did not
            if _compare.scores_of(entry) is None and study and _compare.needs_scoring(entry):
                self._score(entry)
        self._fill()

    def _fill(self) -> None:
        rows = _compare.rows(self.current, self.new)
        self.table.setRowCount(len(rows))
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        scored = _compare.scores_of(self.current) and _compare.scores_of(self.new)
        if scored:
            self._poll.stop()
        elif not self._poll.isActive():
            self._poll.start()
        self.note.setText(
            "the new version's overlays are on the case as separate layers"
            if scored
            else "scoring on the held-out set…"
        )
        if scored and self.auto.isChecked() and _compare.auto_promote(self.current, self.new):
            self.note.setText(f"auto-promoted {self.new['version']}: not worse on held-out")
            self.decided.emit()

    def _recheck(self) -> None:
        """Pick up scores the job wrote since; score a version whose job did not."""
        if self.current is None or self.new is None:
            self._poll.stop()
            return
        found = False
        for entry in (self.current, self.new):
            if _compare.scores_of(entry) is None:
                if _compare.reload_scores(entry):
                    found = True
                elif self.study and _compare.needs_scoring(entry):
                    self._score(entry)
        if found:
            self._fill()

    def _score(self, entry: dict) -> None:
        if entry["path"] in self._scoring:
            return
        self._scoring.add(entry["path"])
        worker = qt_workers.build(self, _compare.score, entry, self.study)
        worker.returned.connect(lambda s, e=entry: self._scored(e, s))
        worker.errored.connect(lambda err: self.note.setText(f"scoring failed: {err}"))
        worker.finished.connect(lambda w=worker: w in self._workers and self._workers.remove(w))
        self._workers.append(worker)
        worker.start()

    def _scored(self, entry: dict, scores: dict) -> None:
        entry["held_out"] = scores
        self._scoring.discard(entry["path"])
        self._scored_now[entry["path"]] = scores
        for e in (self.current, self.new):
            if e is not None and e["path"] == entry["path"]:
                e["held_out"] = scores
        if self.current is not None and self.new is not None:
            self._fill()

    def quit_workers(self) -> None:
        self._poll.stop()
        for w in list(self._workers):
            w.quit()

    # --- decisions -------------------------------------------------------------
    def promote(self) -> None:
        if self.new is not None:
            _compare.promote(self.new)
            self.decided.emit()

    def keep(self) -> None:
        if self.new is not None:
            _compare.keep_current(self.new)
            self.decided.emit()

    def revert(self) -> None:
        if self.current is not None and _compare.previous(self.current):
            _compare.revert(self.current)
            self.decided.emit()
