"""The browser's PACS dialog: search a DICOMweb server, retrieve series with their
labels into the open study (progress bar, in a worker), send a case's accepted mask
back as DICOM SEG. Each button is one call on :mod:`._pacs`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QItemSelectionModel, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_wsseg.widgets import _pacs, qt_workers


class QtPacsDialog(QDialog):
    """Search (patient, accession, modality, date), pick series, retrieve, store."""

    searched = Signal(int)  # number of series found (-1 after an error)
    retrieved = Signal(list)  # new image ids ([] after an error)
    stored = Signal(str)  # a note, or the error text

    def __init__(
        self, root: str | Path, image_id: int | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.root = Path(root)
        self.image_id = image_id
        self.hits: list[dict[str, Any]] = []
        self.worker = None
        self.setWindowTitle("PACS (DICOMweb)")
        names, note = _pacs.server_names()
        self.server = QComboBox()
        self.server.addItems(names)
        self.patient = QLineEdit()
        self.patient.setPlaceholderText("PatientID, * wildcards")
        self.accession = QLineEdit()
        self.modality = QComboBox()
        self.modality.addItems(_pacs.MODALITY_CHOICES)
        self.date = QLineEdit()
        self.date.setPlaceholderText("YYYYMMDD or A-B")
        self.search_btn = QPushButton("Search")
        self.table = QTableWidget(0, len(_pacs.PACS_COLUMNS))
        self.table.setHorizontalHeaderLabels(_pacs.PACS_COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("labels for the retrieved series, e.g. pdac=1")
        self.csv_btn = QPushButton("Labels CSV…")
        self.labels_csv: str | None = None
        self.retrieve_btn = QPushButton("Retrieve selected")
        self.store_btn = QPushButton("Send accepted mask of the open case")
        self.store_btn.setEnabled(image_id is not None)
        self.progress = QProgressBar()
        self.status = QLabel(note)
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("server", self.server)
        form.addRow("patient", self.patient)
        form.addRow("accession", self.accession)
        form.addRow("modality", self.modality)
        form.addRow("study date", self.date)
        labels_row = QHBoxLayout()
        labels_row.addWidget(self.labels)
        labels_row.addWidget(self.csv_btn)
        buttons = QHBoxLayout()
        buttons.addWidget(self.retrieve_btn)
        buttons.addWidget(self.store_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.search_btn)
        lay.addWidget(self.table)
        lay.addLayout(labels_row)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)

        self.search_btn.clicked.connect(self.search)
        self.retrieve_btn.clicked.connect(self.retrieve_selected)
        self.store_btn.clicked.connect(self.store)
        self.csv_btn.clicked.connect(self._ask_csv)
        self.patient.returnPressed.connect(self.search)
        self.resize(760, 560)

    def _server(self) -> str | None:
        return self.server.currentText() or None

    def _start(self, worker, note: str):
        for btn in (self.search_btn, self.retrieve_btn, self.store_btn):
            btn.setEnabled(False)
        self.status.setText(note)
        self.worker = qt_workers.own(self, worker)  # stopped and cut off if the dialog goes
        worker.finished.connect(self._idle)
        worker.start()
        return worker

    def _idle(self) -> None:
        self.worker = None
        self.search_btn.setEnabled(True)
        self.retrieve_btn.setEnabled(True)
        self.store_btn.setEnabled(self.image_id is not None)

    def search(self):
        """Search the server with the filters in a worker; returns the worker."""
        filters = {
            "patient": self.patient.text(),
            "accession": self.accession.text(),
            "modality": self.modality.currentText(),
            "date": self.date.text(),
        }
        worker = create_worker(_pacs.search, self._server(), filters, _ignore_errors=True)
        worker.returned.connect(self.show_hits)
        worker.errored.connect(lambda err: self._failed("search", err, self.searched, -1))
        return self._start(worker, "searching…")

    def show_hits(self, hits: list[dict[str, Any]]) -> None:
        """Fill the results table."""
        self.hits = hits
        self.table.setRowCount(len(hits))
        for row, hit in enumerate(hits):
            for col, value in enumerate(_pacs.hit_cells(hit)):
                item = QTableWidgetItem()
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(hits)} series found")
        self.searched.emit(len(hits))

    def select(self, rows: list[int]) -> None:
        """Select exactly these result rows."""
        self.table.clearSelection()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for row in rows:
            self.table.selectionModel().select(self.table.model().index(row, 0), flags)

    def retrieve_selected(self):
        """Retrieve the selected series into the study in a worker; returns it (or None)."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        if not rows:
            self.status.setText("select the series to retrieve first")
            return None
        try:
            labels = _pacs.parse_labels(self.labels.text())
        except ValueError as err:
            self.status.setText(str(err))
            return None
        hits = [self.hits[r] for r in rows]
        worker = create_worker(
            _pacs.retrieve,
            self.root,
            self._server(),
            hits,
            labels,
            self.labels_csv,
            _ignore_errors=True,
        )
        worker.yielded.connect(self._progress)
        worker.returned.connect(self._retrieved)
        worker.errored.connect(lambda err: self._failed("retrieval", err, self.retrieved, []))
        self.progress.setValue(0)
        return self._start(worker, f"retrieving {len(hits)} series…")

    def _progress(self, step: tuple[int, int, str]) -> None:
        done, total, name = step
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.status.setText(f"retrieving {name}: {done}/{total} images")

    def _retrieved(self, ids: list[int]) -> None:
        self.status.setText(f"retrieved {len(ids)} series into the study (images {ids})")
        self.retrieved.emit(ids)

    def store(self):
        """Send the open case's accepted mask as DICOM SEG in a worker; returns it."""
        worker = create_worker(
            _pacs.store_accepted, self.root, self._server(), self.image_id, _ignore_errors=True
        )
        worker.returned.connect(lambda note: (self.status.setText(note), self.stored.emit(note)))
        worker.errored.connect(lambda err: self._failed("sending", err, self.stored, str(err)))
        return self._start(worker, "sending the accepted mask…")

    def _failed(self, what: str, err: BaseException, signal, value) -> None:
        self.status.setText(f"{what} failed: {err} (nothing half-imported)")
        signal.emit(value)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CSV of labels (series_uid or accession)")
        if path:
            self.labels_csv = path
            self.csv_btn.setText(Path(path).name)
