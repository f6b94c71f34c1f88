"""Correct dock: threshold the predicted mask live, accept edits, browse versions."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QWidget,
)

from napari_wsseg.widgets import _case, _correct, _slots, qt_layout

if TYPE_CHECKING:
    import napari


class QtCorrect(QWidget):
    """Edit the mask with napari's Labels tools, then Accept it as a new version."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 99)
        self.slider.setValue(50)
        self.slider_label = QLabel("threshold 0.50")
        self.author = QLineEdit(getpass.getuser())
        self.accept_btn = QPushButton("Accept mask")
        self.list = QListWidget()
        self.view_btn = QPushButton("View")
        self.restore_btn = QPushButton("Restore")
        self.contour = QCheckBox("mask as outline (see the pixels under it)")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(QLabel("author:"))
        row.addWidget(self.author)
        vrow = QHBoxLayout()
        vrow.addWidget(self.view_btn)
        vrow.addWidget(self.restore_btn)
        lay = qt_layout.scroll_layout(self)
        lay.addWidget(self.slider_label)
        lay.addWidget(self.slider)
        lay.addLayout(row)
        lay.addWidget(self.contour)
        lay.addWidget(self.accept_btn)
        lay.addWidget(QLabel("mask versions:"))
        lay.addWidget(self.list)
        lay.addLayout(vrow)
        lay.addWidget(self.status)

        self.slider.valueChanged.connect(self._threshold_changed)
        self.accept_btn.clicked.connect(self.accept)
        self.view_btn.clicked.connect(self.view_selected)
        self.restore_btn.clicked.connect(self.restore_selected)
        self.contour.toggled.connect(lambda _on: self._apply_contour())
        viewer.layers.events.inserted.connect(lambda _e: self._layer_added())
        _slots.case_opened(viewer).connect(lambda _e: self._layer_added())  # layers reused

    def _layer_added(self) -> None:
        self.refresh_versions()
        self._apply_contour()

    def _apply_contour(self) -> None:
        """Outline (2 px) or fill the case's mask, as the check box says."""
        _correct.set_contour(self.viewer, 2 if self.contour.isChecked() else 0)

    def set_threshold(self, value: float) -> None:
        """Move the slider (0-1); the predicted mask follows unless it has edits."""
        self.slider.setValue(round(value * 100))

    def _threshold_changed(self, value: int) -> None:
        self.slider_label.setText(f"threshold {value / 100:.2f}")
        if not _correct.rethreshold(self.viewer, value / 100):
            self.status.setText("threshold applies to an unedited prediction only")

    def accept(self) -> int | None:
        """Store the mask on screen as a new version (never overwriting one)."""
        try:
            vid = _correct.accept(self.viewer, self.author.text().strip())
        except (ValueError, OSError) as err:
            self.status.setText(f"cannot accept: {err}")
            _case.tell_error(f"Cannot accept the mask: {err}")
            return None
        self.status.setText(f"saved mask version #{vid}")
        self.refresh_versions()
        return vid

    def refresh_versions(self) -> None:
        self.list.clear()
        try:
            versions = _correct.versions(self.viewer)
        except (OSError, ValueError) as err:
            self.status.setText(str(err))
            return
        for v in reversed(versions):
            item = QListWidgetItem(_correct.describe_version(v))
            item.setData(Qt.ItemDataRole.UserRole, v)
            self.list.addItem(item)

    def _selected(self):
        item = self.list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def view_selected(self) -> None:
        v = self._selected()
        if v is not None:
            _correct.view_version(self.viewer, v)

    def restore_selected(self) -> None:
        v = self._selected()
        if v is not None:
            vid = _correct.restore_version(self.viewer, v, self.author.text().strip())
            self.status.setText(f"restored as version #{vid}")
            self.refresh_versions()
