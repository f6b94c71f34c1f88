"""Dock layouts that fit a laptop screen: content in a scroll area, sized to content.

A dock's minimum height is its content's: one tall dock (the Retrain dock's
settings table and loss plot) pushed napari's window past a 1000 px screen and
squeezed the study table to two rows. Inside a scroll area a dock asks for little
height; what does not fit scrolls instead of pushing the window.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QStyledItemDelegate,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from napari_wsseg.widgets._slots import qt_viewer

# A dock's own minimum: enough for a few controls; the rest scrolls.
MIN_DOCK_HEIGHT = 120


def scroll_layout(owner: QWidget) -> QVBoxLayout:
    """A vertical layout for ``owner``'s controls, inside a scroll area filling ``owner``."""
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    inner = QWidget(area)
    area.setWidget(inner)
    outer.addWidget(area)
    owner.setMinimumHeight(MIN_DOCK_HEIGHT)
    owner.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    owner.scroll_area = area
    return QVBoxLayout(inner)


def fit_rows(table: QAbstractItemView, rows: int, max_rows: int | None = None) -> None:
    """Give ``table`` a minimum height of ``rows`` rows (and at most ``max_rows``)."""
    row = table.verticalHeader().defaultSectionSize()
    chrome = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + 4
    table.setMinimumHeight(chrome + rows * row)
    if max_rows is not None:
        table.setMaximumHeight(chrome + max_rows * row)


def column_chooser(table: QTableWidget, stretch: int | None = None) -> None:
    """Columns resize to their content (``stretch`` takes what is left); right-clicking
    the header offers a check list to hide or show each column."""
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(False)
    if stretch is not None:
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def chosen(col: int, on: bool) -> None:
        table.setColumnHidden(col, not on)
        table.setProperty(f"wsseg_chosen_{col}", True)  # the user's choice, kept

    def menu(pos) -> None:
        box = QMenu(table)
        for col in range(table.columnCount()):
            item = table.horizontalHeaderItem(col)
            action = box.addAction(item.text() if item else str(col))
            action.setCheckable(True)
            action.setChecked(not table.isColumnHidden(col))
            action.toggled.connect(lambda on, c=col: chosen(c, on))
        box.exec(header.mapToGlobal(pos))

    header.customContextMenuRequested.connect(menu)


def user_chose(table: QTableWidget, col: int) -> bool:
    """Whether the user showed or hid column ``col`` from the header menu."""
    return bool(table.property(f"wsseg_chosen_{col}"))


def share_width(
    table: QTableWidget, stretch: int, squeeze: int, keep: int, least: int, most: int
) -> None:
    """Columns at their content's width, ``squeeze`` (elided text) at most ``most``
    px; in a narrow table it gives up width, down to ``least`` px, so that the
    ``stretch`` column keeps ``keep`` px (at 1366x768 labels were squeezed to a sliver)."""
    for col in range(table.columnCount()):
        if col != stretch and not table.isColumnHidden(col):
            table.resizeColumnToContents(col)
    others = sum(
        table.columnWidth(c)
        for c in range(table.columnCount())
        if c not in (stretch, squeeze) and not table.isColumnHidden(c)
    )
    room = table.viewport().width() - others - keep
    width = min(table.columnWidth(squeeze), most)
    table.setColumnWidth(squeeze, max(least, min(width, room)))


class _Resized(QObject):
    def __init__(self, widget, callback) -> None:
        super().__init__(widget)
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Resize:
            self._callback()
        return False


def on_resize(widget, callback) -> None:
    """Call ``callback`` each time ``widget`` is resized (the filter lives with it)."""
    _Resized(widget, callback)


class _ElideLeft(QStyledItemDelegate):
    def initStyleOption(self, option, index) -> None:  # noqa: N802 (Qt's name)
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideLeft


def elide_left(table: QTableWidget, col: int) -> None:
    """Cut column ``col``'s long texts at the start: file names keep their distinct
    end ("…001.nii.gz"; cut in the middle, every CT read "ct_00…ii.gz")."""
    table.setItemDelegateForColumn(col, _ElideLeft(table))


def keep_slider_row(viewer) -> bool:
    """Keep one slider row below the canvas even when no slider shows (a 2D case).

    napari hides a slider whose axis has one step and shrinks its dims widget to the
    sliders shown, so going from a photo to a CT or an X-ray (finding slider) and
    back resized the canvas: twice, each a resize and a repaint (50-65 ms on a
    software GL), and the image jumped by a row. With the row kept the canvas keeps
    its size from case to case. napari's Qt viewer is private: without it, nothing
    changes (False).
    """
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get napari's proxy of it
    dims = getattr(qt_viewer(viewer), "dims", None)
    row = getattr(dims, "SLIDERHEIGHT", None)
    if dims is None or row is None or getattr(dims, "_wsseg_row_kept", False):
        return dims is not None and row is not None

    def at_least_a_row(height: int, _dims=dims, _row=row) -> None:
        QWidget.setMinimumHeight(_dims, max(int(height), _row))

    dims.setMinimumHeight = at_least_a_row  # napari calls it on every slider change
    dims._wsseg_row_kept = True
    at_least_a_row(dims.minimumHeight())
    # napari sizes a slider's axis label when its text changes or the slider is
    # resized; with the row kept a slider shown again gets no resize, and a label set
    # while it was hidden stayed cut to "..." ("finding: edema" in the width of "z")
    resize = getattr(dims, "_resize_axis_labels", None)
    if resize is not None:
        timer = QTimer(dims)  # goes with the dims widget
        timer.setSingleShot(True)
        timer.setInterval(0)
        timer.timeout.connect(resize)

        def later(_event, _timer=timer) -> None:
            try:
                _timer.start()
            except RuntimeError:  # the dims widget is gone (its viewer closed)
                pass

        viewer.dims.events.axis_labels.connect(later)
        viewer.dims.events.range.connect(later)
    return True
