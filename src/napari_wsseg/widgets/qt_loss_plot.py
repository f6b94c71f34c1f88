"""A tiny loss curve drawn with QPainter (no plotting library in the dock)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QWidget


class QtLossPlot(QWidget):
    """Training loss against step, on a log scale when it spans decades."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.setMinimumHeight(90)

    def add(self, step: float, loss: float) -> None:
        if math.isfinite(loss):
            self.points.append((float(step), float(loss)))
            self.update()

    def clear(self) -> None:
        self.points.clear()
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 41, 48))
        if len(self.points) < 2:
            p.setPen(QColor(160, 160, 160))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "loss curve")
            return
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        use_log = min(ys) > 0 and max(ys) / min(ys) > 20
        ys = [math.log10(y) for y in ys] if use_log else ys
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        w, h, m = self.width(), self.height(), 6
        sx = (w - 2 * m) / ((x1 - x0) or 1)
        sy = (h - 2 * m) / ((y1 - y0) or 1)
        pts = [QPointF(m + (x - x0) * sx, h - m - (y - y0) * sy) for x, y in zip(xs, ys)]
        p.setPen(QPen(QColor(90, 200, 250), 1.5))
        p.drawPolyline(pts)
        p.setPen(QColor(200, 200, 200))
        p.drawText(m, 12, f"loss {self.points[-1][1]:.4g}" + (" (log)" if use_log else ""))
