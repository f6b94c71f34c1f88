"""Suggest next: a ranked list of the cases to annotate, with the reason, to walk through."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_wsseg.widgets import _case, _explain, _put, qt_steps, qt_workers

if TYPE_CHECKING:
    import napari


class QtSuggest(QGroupBox):
    """Rank the case's modality by the current version's uncertainty; open by click."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__("suggest next case to annotate", parent)
        self.viewer = viewer
        self.worker = None
        self.rows: list[dict] = []
        self.run_btn = QPushButton("Suggest next")
        self.next_btn = QPushButton("Open next")
        self.next_btn.setEnabled(False)
        self.list = QListWidget()
        self.list.setMaximumHeight(120)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.next_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(buttons)
        lay.addWidget(self.note)
        lay.addWidget(self.list)
        self.run_btn.clicked.connect(self.suggest)
        self.next_btn.clicked.connect(self.open_next)
        self.list.itemDoubleClicked.connect(
            lambda item: self.open(int(item.data(Qt.ItemDataRole.UserRole)))
        )

    def suggest(self):
        """Rank in a worker thread; the list fills when it returns."""
        case = _case.current_case(self.viewer)
        if case is None:
            self.note.setText("open a case first: suggestions use its modality's model")
            return None
        self.run_btn.setEnabled(False)
        self.note.setText("ranking by the current model's uncertainty…")
        t0 = time.perf_counter()
        worker = qt_workers.build(
            self, _explain.suggest_rows, case["study"], case["modality"], desc="suggest"
        )
        worker.returned.connect(lambda rows: self.show_rows(rows, time.perf_counter() - t0))
        worker.errored.connect(lambda err: self.note.setText(f"suggest failed: {err}"))
        worker.finished.connect(lambda: self.run_btn.setEnabled(True))
        self.worker = worker
        worker.start()
        return worker

    def show_rows(self, rows: list[dict], seconds: float = 0.0) -> None:
        self.rows = rows
        self.list.clear()
        for i, row in enumerate(rows, 1):
            item = QListWidgetItem(_explain.suggestion_text(i, row))
            item.setData(Qt.ItemDataRole.UserRole, int(row["image_id"]))
            self.list.addItem(item)
        by = rows[0]["version"] if rows else "the current model"
        self.note.setText(
            f"{len(rows)} cases without a mask, most uncertain first ({by}, {seconds:.1f} s)"
            if rows
            else "every case has a mask (or is held out)"
        )
        self.next_btn.setEnabled(bool(rows))

    def open(self, image_id: int) -> None:
        """Open a suggested case (not over unsaved edits)."""
        qt_steps.finish_for(self.viewer)  # a case the browser is still putting on screen
        case = _case.current_case(self.viewer)
        if case is None:
            return
        if _case.has_unsaved_edits(self.viewer):
            self.note.setText("the mask on screen has unsaved edits: accept or discard first")
            return
        from napari_wsseg.widgets._correct import study_at

        with study_at(case["study"]) as study:
            _put.show_case(self.viewer, study, image_id)
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == image_id:
                self.list.setCurrentRow(i)

    def open_next(self) -> None:
        """Open the next case of the list after the selected one."""
        if not self.list.count():
            return
        row = min(self.list.currentRow() + 1, self.list.count() - 1)
        self.open(int(self.list.item(row).data(Qt.ItemDataRole.UserRole)))
