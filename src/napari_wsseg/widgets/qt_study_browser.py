"""Study browser dock: open a study, browse images and weak labels, open a case."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_wsseg.widgets import _case, _explain, _put, qt_layout, qt_prepare, qt_steps, qt_workers
from napari_wsseg.widgets._slots import SPARE_KEY
from napari_wsseg.widgets.qt_study_imports import StudyImports

if TYPE_CHECKING:
    import napari

COLUMNS = ["id", "image", "modality", "labels", "mask", "versions", "suggested"]
_CHECK = {
    "negative": Qt.CheckState.Unchecked,
    "unknown": Qt.CheckState.PartiallyChecked,
    "positive": Qt.CheckState.Checked,
}
HEADERS = ["id", "image", "mod.", "labels", "mask", "ver.", "next"]
NAME_WIDTH = 110
LABELS_WIDTH = 100  # what the labels column keeps in a narrow dock ("malignant")
MIN_ROWS = 8  # the table never shrinks below this many rows (the dock scrolls instead)


def _mask_key(layer) -> tuple:
    """The image a mask layer shows and the stored version it starts from."""
    meta = layer.metadata
    return (meta.get(_case.CASE_KEY) or {}).get("image_id"), meta.get("wsseg_parent")


class QtStudyBrowser(StudyImports, QWidget):
    """Table of a study's images; double-click (or Alt+Right/Left) opens a case."""

    case_opened = Signal(int)
    import_finished = Signal(list)  # the new image ids ([] after an error or a cancel)

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.study = None
        self._records: list = []
        self._suggest_rank: dict[int, int] = {}
        self._mask_shown: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.current_id: int | None = None
        self.import_worker = None
        self._opening: int | None = None
        # a case put on screen in steps (one per turn of the event loop, so no stall
        # is long: _put.put_case_steps)
        self._steps = qt_steps.Steps(self, viewer)
        self.prepare = qt_prepare.Prepare(self, viewer)  # spare layers made ahead
        qt_layout.keep_slider_row(viewer)  # the canvas keeps its size from case to case
        # Cases open in a worker from the GUI (double-click, previous/next); code that
        # calls open_image / open_row gets them at once unless it asks otherwise.
        self.background = True
        # Which series of a multi-series folder to import; tests replace it.
        self.choose_series = self._ask_series

        self.open_btn = QPushButton("Open study…")
        self.open_btn.setToolTip("open or create a study folder")
        self.import_btn = QPushButton("Import files…")
        self.import_btn.setToolTip("images, or a CSV of images and their labels")
        self.import_dir_btn = QPushButton("DICOM folder…")
        self.import_dir_btn.setToolTip(
            "a series folder, a study folder or a CD / PACS export: when it holds several "
            "series you pick which ones are copied into the study (the main one, most "
            "slices, is preselected)"
        )
        self.pacs_btn = QPushButton("PACS…")
        self.pacs_btn.setToolTip(
            "search a DICOMweb PACS (server from your config), retrieve series with their "
            "labels, send the open case's accepted mask back as DICOM SEG"
        )
        self.pacs_dialog = None
        self.path_label = QLabel("no study open")
        self.note_label = QLabel("")
        self.note_label.setWordWrap(True)
        self.modality = QComboBox()
        self.modality.addItems(["all", "ct", "mammo", "slide", "xray", "skin"])
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter by name or label…")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        for col, name in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(col).setToolTip(f"{name} (right-click: columns)")
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().setDefaultSectionSize(24)
        qt_layout.fit_rows(self.table, MIN_ROWS)
        qt_layout.column_chooser(self.table, stretch=COLUMNS.index("labels"))
        qt_layout.on_resize(self.table, self._fit_columns)
        qt_layout.elide_left(self.table, COLUMNS.index("image"))
        self.labels_box = QWidget()
        self.labels_layout = QGridLayout(self.labels_box)
        self.labels_layout.setContentsMargins(0, 0, 0, 0)
        self.add_btn = QPushButton("Add the image on screen to the study")
        self.add_btn.setToolTip(
            "an image opened with File > Open or dropped on the canvas: copy it into the "
            "study and open it as a case (then set its labels below and press Explain)"
        )
        self.add_btn.setEnabled(False)
        self._foreign = None  # that image layer
        self.suggest_btn = QPushButton("Suggest next")
        self.suggest_btn.setToolTip(
            "rank the unannotated images of the current case's modality with its newest model"
        )
        self.prev_btn = QPushButton("◀ prev")
        self.next_btn = QPushButton("next ▶")

        top = QHBoxLayout()
        top.addWidget(self.open_btn)
        top.addWidget(self.import_btn)
        top.addWidget(self.import_dir_btn)
        top.addWidget(self.pacs_btn)
        filt = QHBoxLayout()
        filt.addWidget(self.modality)
        filt.addWidget(self.filter)
        nav = QHBoxLayout()
        nav.addWidget(self.suggest_btn)
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.next_btn)
        lay = qt_layout.scroll_layout(self)
        lay.addLayout(top)
        lay.addWidget(self.path_label)
        lay.addWidget(self.note_label)
        lay.addWidget(self.add_btn)
        lay.addLayout(filt)
        lay.addWidget(self.table)
        lay.addWidget(QLabel("image-level labels (click to fix):"))
        lay.addWidget(self.labels_box)
        lay.addLayout(nav)

        self.open_btn.clicked.connect(self._ask_study)
        self.import_btn.clicked.connect(self._ask_import)
        self.import_dir_btn.clicked.connect(self._ask_import_folder)
        self.pacs_btn.clicked.connect(self.open_pacs)
        self.modality.currentTextChanged.connect(lambda _: self.refresh())
        self.filter.textChanged.connect(lambda _: self.refresh())
        self.table.cellDoubleClicked.connect(
            lambda row, _col: self.open_row(row, background=self.background)
        )
        self.suggest_btn.clicked.connect(self.suggest)
        self.add_btn.clicked.connect(self.add_on_screen)
        self.prev_btn.clicked.connect(lambda: self.step(-1))
        self.next_btn.clicked.connect(lambda: self.step(+1))
        viewer.layers.events.inserted.connect(self._layer_added)
        viewer.bind_key("Alt-Right", lambda _v: self.step(+1), overwrite=True)
        viewer.bind_key("Alt-Left", lambda _v: self.step(-1), overwrite=True)

    # --- study ---------------------------------------------------------------
    def open_study(self, root: str | Path) -> None:
        """Open (or create, if the folder is empty or missing) a study and list it."""
        self.study = _case.open_or_create_study(root)
        self.path_label.setText(str(Path(root)))
        self.refresh()

    def set_suggestions(self, ranked_ids: list[int]) -> None:
        """Show the engine's "annotate next" ranking in the table."""
        self._suggest_rank = {iid: k + 1 for k, iid in enumerate(ranked_ids)}
        self.refresh()

    def suggest(self):
        """Rank the open case's modality in a worker; the table's last column shows it."""
        case = _case.current_case(self.viewer)
        if case is None:
            self.viewer.status = "open a case first: suggestions use its modality's model"
            _case.tell_warning("Suggest next: open a case first (it ranks that modality)")
            return None
        self.suggest_btn.setEnabled(False)
        worker = qt_workers.build(
            self, _explain.suggest_next, case["study"], case["modality"], desc="suggest next"
        )
        worker.returned.connect(self.set_suggestions)
        worker.errored.connect(lambda err: _case.tell_error(f"Suggest next: {err}"))
        worker.finished.connect(lambda: self.suggest_btn.setEnabled(True))
        worker.start()
        return worker

    def refresh(self) -> None:
        """Re-read the catalog and fill the table with the filter applied."""
        if self.study is None:
            return
        self._records = _case.filter_records(
            self.study.images(), self.modality.currentText(), self.filter.text()
        )
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self._records))
        for row, rec in enumerate(self._records):
            values = [
                rec.id,
                Path(rec.relpath).name,
                rec.modality,
                _case.format_labels(rec.labels, rec.modality),
                rec.mask_status,
                rec.n_mask_versions,
                self._suggest_rank.get(rec.id, ""),
            ]
            for col, value in enumerate(values):
                item = QTableWidgetItem()
                item.setData(Qt.ItemDataRole.DisplayRole, value)
                item.setData(Qt.ItemDataRole.UserRole, rec.id)
                item.setToolTip(str(value))  # the whole text of an elided cell
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Short headers ("ver.", "next") and columns sized to their content; the image
        name (cut at the start) at most :data:`NAME_WIDTH` px and less in a narrow
        dock, so the labels column keeps :data:`LABELS_WIDTH`; "next" shows once
        Suggest has ranked (or when chosen from the header menu)."""
        self.table.horizontalHeader().setMinimumSectionSize(24)
        nxt = COLUMNS.index("suggested")
        if not qt_layout.user_chose(self.table, nxt):
            self.table.setColumnHidden(nxt, not self._suggest_rank)
        name, labels = COLUMNS.index("image"), COLUMNS.index("labels")
        qt_layout.share_width(self.table, labels, name, LABELS_WIDTH, 72, NAME_WIDTH)

    # --- cases ---------------------------------------------------------------
    def _row_id(self, row: int) -> int | None:
        item = self.table.item(row, 0)
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def row_of(self, image_id: int) -> int | None:
        """The table row showing image ``image_id`` (None when filtered out)."""
        for row in range(self.table.rowCount()):
            if self._row_id(row) == image_id:
                return row
        return None

    def open_row(self, row: int, background: bool = False):
        """Open the image shown in table row ``row`` (``background``: read it in a
        worker, returned, and show it when read)."""
        image_id = self._row_id(row)
        if image_id is not None:
            self.table.selectRow(row)
            return self.open_image(image_id, background=background)
        return None

    def open_image(self, image_id: int, background: bool = False):
        """Replace the viewer's case layers with this image (asks first if a mask is
        unsaved). With ``background`` (double-click, previous/next) the files are read
        in a worker, so the viewer stays responsive; returns that worker."""
        if self.study is None:
            return None
        if _case.has_unsaved_edits(self.viewer) and not self._confirm_leave():
            return None
        if not background:
            try:
                loaded = _case.load_case(self.study, image_id)
            except (OSError, ValueError) as err:
                self._open_failed(image_id, err)
                return None
            self._put(image_id, loaded)
            return None
        self._opening = image_id
        self.viewer.status = f"opening image {image_id}…"
        return qt_workers.start(
            self,
            _case.load_case_at,
            self.study.root,
            image_id,
            desc=f"open image {image_id}",
            returned=lambda loaded: (
                self._opening == image_id and self._put(image_id, loaded, stepwise=True)
            ),
            errored=lambda err: self._open_failed(image_id, err),
        )

    def _put(self, image_id: int, loaded: dict, stepwise: bool = False) -> None:
        """Put a read case on screen: at once, or (``stepwise``) one step per turn of
        the event loop; a case still coming in goes on screen first."""
        self._opening = None
        self.prepare.cancel()  # the case must not wait behind spare layers made ahead
        steps = _put.put_case_steps(self.viewer, loaded)  # runs from the first step on
        self._steps.start(steps, lambda: self._opened(image_id, loaded), stepwise)

    def finish_steps(self) -> None:
        """Run the rest of a case's steps now (before another case, in tests)."""
        self._steps.finish()

    def _opened(self, image_id: int, loaded: dict) -> None:
        QTimer.singleShot(0, self.viewer.reset_view)  # once the canvas has its size
        self.current_id = image_id
        self._show_label_boxes(image_id)
        self.viewer.status = f"opened {Path(loaded['rec'].relpath).name}"
        self.case_opened.emit(image_id)
        self.prepare.after_open(loaded["root"], loaded["rec"].modality)

    def _open_failed(self, image_id: int, err: BaseException) -> None:
        rec = self.study.image(image_id)
        text = _case.error_text(rec.path, err)
        self.viewer.status = f"cannot open image {image_id}: {err}"
        _case.tell_error(f"Cannot open image {image_id}: {text}. Check the file, or re-import it.")

    def step(self, delta: int) -> None:
        """Open the next (+1) or previous (-1) case in the table's order."""
        ids = [self._row_id(r) for r in range(self.table.rowCount())]
        if not ids:
            return
        k = ids.index(self.current_id) + delta if self.current_id in ids else 0
        self.open_row(max(0, min(len(ids) - 1, k)), background=self.background)

    def _layer_added(self, event) -> None:
        # a mask's metadata changes when a version is stored: the table's mask columns
        # (a spare mask made ahead is a case's mask later)
        layer, meta = event.value, event.value.metadata
        if meta.get("wsseg_role") == "mask" or meta.get(SPARE_KEY) == "mask":
            self._mask_shown[layer] = _mask_key(layer)
            layer.events.metadata.connect(lambda _e, ly=layer: self._mask_meta(ly))
        path = _case.foreign_path(event.value)
        if path is not None:
            QTimer.singleShot(0, lambda ly=event.value: self._foreign_image(ly))

    def _mask_meta(self, layer) -> None:
        """Refresh the table when a version was stored for the case shown (the mask's
        parent changed, its image not); a case put on screen sets the metadata too, and
        a refresh then repainted every row for nothing."""
        key, last = _mask_key(layer), self._mask_shown.get(layer)
        self._mask_shown[layer] = key
        if last is not None and key[0] is not None and last[0] == key[0] and last != key:
            self.refresh()

    def _foreign_image(self, layer) -> None:
        """A file opened outside the study: the last case leaves the screen (its layers
        were in other units, and Explain would have re-run it), and the file can join
        the study with one click."""
        if layer not in self.viewer.layers:
            return
        self._foreign = layer
        self.add_btn.setEnabled(self.study is not None)
        if not _case.has_unsaved_edits(self.viewer):
            self.finish_steps()
            nd = layer.ndim
            _put.clear_case(self.viewer, tuple(layer.scale[-nd:]), tuple(layer.translate[-nd:]))
            self.current_id = None
        name = Path(_case.foreign_path(layer)).name
        where = "press 'Add the image on screen to the study'" if self.study else "open a study"
        self.note_label.setText(f"{name} is not in the study: {where} to label and explain it")
        self.viewer.reset_view()

    def add_on_screen(self):
        """Import the image opened with File > Open into the study and open it as a
        case (returns the import worker)."""
        layer = self._foreign
        if layer is None or layer not in self.viewer.layers or self.study is None:
            _case.tell_warning("Add to study: open an image with File > Open and a study first")
            return None
        path = _case.foreign_path(layer)

        def opened(ids: list) -> None:
            self.import_finished.disconnect(opened)
            if not ids:
                return
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            self._foreign = None
            self.add_btn.setEnabled(False)
            self.open_image(ids[0])

        self.import_finished.connect(opened)
        return self.import_files([path], layer.metadata.get("modality"))

    def _confirm_leave(self) -> bool:
        answer = QMessageBox.question(
            self, "Unsaved mask", "The mask of this case has unsaved edits. Leave it anyway?"
        )
        return answer == QMessageBox.StandardButton.Yes

    def _show_label_boxes(self, image_id: int) -> None:
        rec = self.study.image(image_id)
        names = list(_case.vocabulary(rec.modality))
        boxes = [self.labels_layout.itemAt(i).widget() for i in range(self.labels_layout.count())]
        if [b.text() for b in boxes] != names:  # another vocabulary: new boxes
            for old in boxes:
                self.labels_layout.removeWidget(old)
                old.setParent(None)  # gone now, not at the next event-loop turn
                old.deleteLater()
            boxes = []
            for i, name in enumerate(names):
                box = QCheckBox(name)
                box.setTristate(True)
                box.stateChanged.connect(lambda _s, n=name, b=box: self._label_clicked(n, b))
                self.labels_layout.addWidget(box, i // 2, i % 2)
                boxes.append(box)
        # the same boxes for a case of the same modality: no re-layout of the dock
        for name, box in zip(names, boxes):
            # three states: ✓ positive, empty negative, ■ unknown (never assumed negative)
            state = _case.label_state(rec.labels, name)
            box.blockSignals(True)
            box.setCheckState(_CHECK[state])
            box.blockSignals(False)
            box.setToolTip(f"{name}: {state} (click: unknown → positive → negative)")

    def _label_clicked(self, name: str, box: QCheckBox) -> None:
        state = {v: k for k, v in _CHECK.items()}[box.checkState()]
        box.setToolTip(f"{name}: {state} (click: unknown → positive → negative)")
        self.set_label(name, None if state == "unknown" else state == "positive")

    def set_label(self, name: str, value: bool | None) -> None:
        """Fix one image-level label of the current case (None: unknown)."""
        if self.study is None or self.current_id is None:
            return
        self.study.set_labels(self.current_id, {name: None if value is None else int(value)})
        self.refresh()

    # --- dialogs -------------------------------------------------------------
    def open_pacs(self):
        """Show the PACS dialog for the open study (and case); returns it."""
        from napari_wsseg.widgets.qt_pacs_dialog import QtPacsDialog

        try:
            root = self._study_root()
        except RuntimeError as err:
            QMessageBox.warning(self, "PACS", str(err))
            return None
        self.pacs_dialog = QtPacsDialog(root, self.current_id, self)
        self.pacs_dialog.retrieved.connect(lambda ids: self.refresh())
        self.pacs_dialog.show()
        return self.pacs_dialog

    def _ask_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open or create a study folder")
        if folder:
            self.open_study(folder)
