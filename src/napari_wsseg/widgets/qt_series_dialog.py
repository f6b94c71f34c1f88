"""Pick the series of a multi-series DICOM folder to import (from a header-only listing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QItemSelectionModel, Qt
from qtpy.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_wsseg.widgets._case import SERIES_COLUMNS, series_cells


class QtSeriesDialog(QDialog):
    """A table of a folder's series, main first and preselected; each selected series
    becomes its own image in the study. :meth:`chosen` gives their indices."""

    def __init__(
        self, folder: str | Path, listing: list[dict[str, Any]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.listing = listing
        self.setWindowTitle(f"Import series of {Path(folder).name}")
        intro = QLabel(
            f"{folder} holds {len(listing)} series. Select the ones to import "
            "(Ctrl+click for several); each becomes its own image."
        )
        intro.setWordWrap(True)
        self.table = QTableWidget(len(listing), len(SERIES_COLUMNS))
        self.table.setHorizontalHeaderLabels(SERIES_COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        for row, info in enumerate(listing):
            for col, value in enumerate(series_cells(info)):
                item = QTableWidgetItem()
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                self.table.setItem(row, col, item)
        if not any(info.get("problem") for info in listing):
            self.table.hideColumn(SERIES_COLUMNS.index("problem"))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update_ok)
        self.table.cellDoubleClicked.connect(lambda *_: self.accept())
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.table)
        lay.addWidget(self.buttons)
        main = [k for k, info in enumerate(listing) if info.get("main")] or [0]
        self.select(main)
        self.resize(max(520, self.table.horizontalHeader().length() + 40), 120 + 30 * len(listing))

    def select(self, rows: list[int]) -> None:
        """Select exactly these rows (positions in the listing)."""
        self.table.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in rows:
            self.table.selectionModel().select(self.table.model().index(row, 0), flags)
        self._update_ok()

    def chosen(self) -> list[int]:
        """The series indices (``series=`` values) of the selected rows, in listing order."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [int(self.listing[row]["index"]) for row in rows]

    def _update_ok(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(bool(self.table.selectionModel().selectedRows()))
