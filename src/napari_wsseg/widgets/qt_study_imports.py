"""The study browser's imports: files, CSV label tables and DICOM folders, each in a
worker, with the series picker for a folder holding several series."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtWidgets import QFileDialog

from napari_wsseg.widgets import _case, qt_workers
from napari_wsseg.widgets.qt_series_dialog import QtSeriesDialog


class StudyImports:
    """Import actions of :class:`~napari_wsseg.widgets.qt_study_browser.QtStudyBrowser`
    (a mixin: it uses the browser's study, buttons, note label and signals)."""

    def import_files(self, paths: list[str], modality: str | None = None):
        """Add image files, or a CSV of images + labels, to the open study in a worker
        (returned); :attr:`import_finished` gives the new ids when it is done."""
        root = self._study_root()
        paths = [str(p) for p in paths]
        where = paths[0] if len(paths) == 1 else None
        worker = qt_workers.build(
            self, _case.import_files_at, root, paths, modality, desc="import"
        )
        return self._start_import(_case.short_names(paths), where, worker)

    def import_folder(self, folder: str | Path, series: list[int] | None = None):
        """Add a DICOM folder to the open study, off the UI thread; returns the worker.

        Without ``series`` a worker lists the folder's series from their headers and,
        when there are several, :attr:`choose_series` asks which ones (the main one
        preselected; each chosen series becomes its own image); ``series`` (indices
        of that listing) imports those without asking. The note under the study path
        says which series came in and which were left out; :attr:`import_finished`
        gives the new ids ([] after an error or a cancel).
        """
        root = self._study_root()
        folder = str(folder)
        if series is not None:
            worker = qt_workers.build(
                self, _case.import_series_at, root, folder, list(series), desc="import"
            )
            return self._start_import(Path(folder).name, folder, worker)
        self._set_busy(f"reading the series of {Path(folder).name}…")
        worker = qt_workers.build(self, _case.list_series, folder, desc="read series")
        worker.returned.connect(lambda listing: self._series_listed(root, folder, listing))
        worker.errored.connect(lambda err: self._import_failed(folder, err))
        worker.start()
        self.import_worker = worker
        return worker

    def _series_listed(self, root: Path, folder: str, listing: list[dict]) -> None:
        chosen = None
        if len(listing) > 1:
            chosen = self.choose_series(folder, listing)
            if not chosen:
                self._import_done([], f"import of {Path(folder).name} cancelled: nothing imported")
                return
        worker = qt_workers.build(
            self, _case.import_series_at, root, folder, chosen, desc="import"
        )
        self._start_import(Path(folder).name, folder, worker)

    def _ask_series(self, folder: str, listing: list[dict]) -> list[int] | None:
        """The series the user picks in :class:`QtSeriesDialog` (None: cancelled)."""
        dialog = QtSeriesDialog(folder, listing, self)
        return dialog.chosen() if dialog.exec() else None

    def _study_root(self) -> Path:
        if self.study is None:
            raise RuntimeError("open a study first")
        return self.study.root

    def _start_import(self, name: str, where: str | None, worker):
        self._set_busy(f"importing {name}…")
        worker.returned.connect(lambda result: self._imported(*result))
        worker.errored.connect(lambda err: self._import_failed(where, err))
        worker.start()
        self.import_worker = worker
        return worker

    def _set_busy(self, note: str) -> None:
        for btn in (self.open_btn, self.import_btn, self.import_dir_btn):
            btn.setEnabled(False)
        self.note_label.setText(note)
        self.viewer.status = note

    def _imported(self, ids: list[int], note: str, errors: list[str]) -> None:
        if errors:
            _case.tell_warning("Some series were not imported: " + "; ".join(errors))
        self._import_done(ids, note)

    def _import_failed(self, where: str | None, err: BaseException) -> None:
        text = str(err) if where is None else _case.error_text(where, err)
        _case.tell_error(text)
        self._import_done([], f"import failed: {text}")

    def _import_done(self, ids: list[int], note: str) -> None:
        self.import_worker = None
        for btn in (self.open_btn, self.import_btn, self.import_dir_btn):
            btn.setEnabled(True)
        self.refresh()
        self.note_label.setText(note)
        self.viewer.status = note
        self.import_finished.emit(ids)

    def _ask_import(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Import images or a CSV of labels")
        if files:
            try:
                self.import_files(files)
            except RuntimeError as err:
                _case.tell_error(f"Import failed: {err}")

    def _ask_import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Import a DICOM folder (series, study or CD export)"
        )
        if folder:
            try:
                self.import_folder(folder)
            except RuntimeError as err:
                _case.tell_error(_case.error_text(folder, err))
