"""napari's layer list without rows for the spare layers.

A spare (:mod:`._slots`: a hidden one-pixel layer kept for the next case of its kind)
is not something a user reads or edits, yet each one had a row ("spare ct image"):
eight of a dozen rows once a study's kinds are made ahead, a list to scroll past, and
a list paint (napari draws each row's thumbnail and icons, about 2 ms a row on a
software GL) three times the cost. The rows of spares are hidden in the view (the
layers stay in ``viewer.layers``); a spare taken back by a case gets its row again.
"""

from __future__ import annotations

import weakref

from qtpy.QtCore import QObject, Qt, QTimer

from napari_wsseg.widgets._slots import SPARE_KEY, qt_viewer


class _SpareRows(QObject):
    """Keeps the layer list's hidden rows those of the spares; goes with the list."""

    def __init__(self, view, layers) -> None:
        super().__init__(view)
        self._view = view
        self._watched: weakref.WeakSet = weakref.WeakSet()
        # after napari's model took the change in (its rows then match the layers)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.sync)
        for name in ("inserted", "removed", "moved", "reordered"):
            getattr(layers.events, name).connect(self._later)
        self._later()

    def _later(self, _event=None) -> None:
        try:
            self._timer.start()
        except RuntimeError:  # the list is gone (its viewer closed)
            pass

    def sync(self) -> None:
        """Hide each spare's row and show every other (only rows that change)."""
        model = self._view.model()
        if model is None:
            return
        for row in range(model.rowCount()):
            layer = model.index(row, 0).data(Qt.ItemDataRole.UserRole)  # napari's item role
            if layer is None:
                continue
            if layer not in self._watched:  # park and claim set the metadata
                self._watched.add(layer)
                layer.events.metadata.connect(self._later)
            spare = SPARE_KEY in getattr(layer, "metadata", {})
            if self._view.isRowHidden(row) != spare:
                self._view.setRowHidden(row, spare)


def hide_spare_rows(viewer) -> bool:
    """Hide the spares' rows in ``viewer``'s layer list from now on. napari's Qt viewer
    is private: without it nothing changes (False)."""
    view = getattr(qt_viewer(viewer), "layers", None)
    if not hasattr(view, "setRowHidden") or view.model() is None:
        return False
    if getattr(view, "_wsseg_spare_rows", None) is None:
        view._wsseg_spare_rows = _SpareRows(view, getattr(viewer, "__wrapped__", viewer).layers)
    return True
