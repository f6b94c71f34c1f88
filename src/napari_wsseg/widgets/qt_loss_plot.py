"""Loss and validation curves of a training job: a small matplotlib figure in the dock.

Every loss a ``step`` progress event carries (``losses``: the total ``loss`` and the
method's components) is one line against the global step, the total drawn thicker;
the metrics of ``val`` events are markers on a second y-axis. The y-axis turns
logarithmic when the losses span more than :data:`LOG_SPAN` times (zeros, such as a
term switched off, are then left out; a negative value keeps it linear).

The plot never redraws per event: points are buffered and drawn with ``draw_idle`` at
most once every ``redraw_s`` seconds (the viewer stays responsive while a job logs
every step), and at once on :meth:`QtLossPlot.clear` and when the job ends. Names,
colours and last values are a label above the figure. matplotlib is imported in a
worker thread when the widget is made (0.5 s on the UI thread held the Retrain dock's
opening past 1 s), and the figure is built (30 ms) when that returns, or at the first
redraw if that comes first; until then a label holds its place.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

BACKGROUND = "#262930"  # napari's dark theme, (38, 41, 48)
FOREGROUND = "#d4d6d8"
GRID = "#3b3f48"
TOTAL_COLOR = "#5ac8fa"
COMPONENT_COLORS = ("#ffb454", "#8fd18f", "#d38fd8", "#f07178", "#c2b280", "#7fb6d8")
METRIC_COLORS = ("#f5e06e", "#7ee0c3", "#ff9e80", "#b0a0ff")
HEIGHT_PX = 150
LOG_SPAN = 20.0  # max/min of the losses above which the y-axis is logarithmic
MAX_KEPT = 2000  # points kept a series; longer ones are averaged in pairs
END_EVENTS = ("done", "cancelled", "error")

Series = list[tuple[float, float]]


def _import_backend() -> None:
    """matplotlib's Qt canvas and figure modules, imported in a worker, and one small
    figure drawn off screen (Agg, no Qt): the first draw loads the font list and the
    glyphs and held the UI 0.2-0.5 s."""
    import matplotlib.backends.backend_qtagg  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2, HEIGHT_PX / 100), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.plot([1, 100], [0.01, 10])
    ax.set_yscale("log")
    ax.set_xlabel("step", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.twinx().set_ylabel("validation", fontsize=7)
    figure.canvas.draw()


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _append(series: Series, x: float, y: float) -> None:
    """Add a point; a step at or before the last one (a job resumed from an earlier
    checkpoint) replaces the points from there on. Past :data:`MAX_KEPT` points,
    neighbours are averaged in pairs, so memory and drawing time stay bounded."""
    while series and series[-1][0] >= x:
        series.pop()
    series.append((x, y))
    if len(series) > MAX_KEPT:
        pairs = zip(series[0::2], series[1::2])
        merged = [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in pairs]
        series[:] = merged + series[2 * len(merged) :]


def _wide(ys: list[float]) -> bool:
    """Log scale: no value is negative (it would vanish) and the positive ones span more
    than LOG_SPAN times. Zeros (a term switched off, a step without active pairs) are
    left out of a log axis."""
    pos = [y for y in ys if y > 0]
    return bool(pos) and min(ys) >= 0 and max(pos) / min(pos) > LOG_SPAN


class QtLossPlot(QWidget):
    """Losses by name against step, validation metrics on a twin axis.

    Parameters
    ----------
    parent
        Qt parent.
    redraw_s
        Least time between two redraws while points arrive.
    """

    def __init__(self, parent: QWidget | None = None, redraw_s: float = 2.0) -> None:
        super().__init__(parent)
        self.losses: dict[str, Series] = {}
        self.metrics: dict[str, Series] = {}
        self.redraw_s = redraw_s
        self.n_draws = 0
        self._last_draw = -math.inf
        self._lines: dict[tuple[str, str], Any] = {}
        self.figure = self.canvas = self.ax = self.ax_metric = None  # built later

        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setStyleSheet(f"font-size: 10px; color: {FOREGROUND};")
        self._placeholder = QLabel("loss curve")
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setFixedHeight(HEIGHT_PX)
        self._placeholder.setStyleSheet(f"color: #a0a0a0; background: {BACKGROUND};")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.legend)
        lay.addWidget(self._placeholder)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.redraw)
        from napari_wsseg.widgets import qt_workers

        qt_workers.start(
            self, _import_backend, returned=lambda _r: self._build(), errored=self._no_plot
        )

    def _build(self, draw: bool = True) -> None:
        """The figure, in the placeholder's place (once); the points that came before
        it are drawn (``draw``) unless a redraw is what builds it."""
        if self.figure is not None:
            return
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, HEIGHT_PX / 100), dpi=100, facecolor=BACKGROUND)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(HEIGHT_PX)
        self.ax = self.figure.add_subplot()
        self.ax_metric = self.ax.twinx()
        self._style()
        self._layout()
        self.canvas.mpl_connect("resize_event", self._layout)
        self._empty = self.ax.text(
            0.5,
            0.5,
            "loss curve",
            transform=self.ax.transAxes,
            ha="center",
            va="center",
            color="#a0a0a0",
            fontsize=8,
        )
        self.layout().replaceWidget(self._placeholder, self.canvas)
        self._placeholder.deleteLater()
        if draw and (self.losses or self.metrics):
            self.redraw()

    def _no_plot(self, err: BaseException) -> None:
        self._placeholder.setText(f"no loss plot: matplotlib did not load ({err})")

    # --- data ------------------------------------------------------------------
    @property
    def points(self) -> Series:
        """(step, total loss) points received so far (pairs averaged past MAX_KEPT)."""
        return self.losses.get("loss", [])

    def add(self, step: float, loss: float, name: str = "loss") -> None:
        """One loss value (the total by default) at ``step``."""
        self.add_losses(step, {name: loss})

    def add_losses(self, step: float, losses: dict[str, Any]) -> None:
        """The losses of one step event (non-numbers and non-finite values skipped)."""
        self._add(self.losses, step, losses)

    def add_metrics(self, step: float, metrics: dict[str, Any]) -> None:
        """The metrics of one validation event."""
        self._add(self.metrics, step, metrics)

    def add_event(self, event: dict[str, Any]) -> None:
        """A progress event: ``step`` adds losses, ``val`` metrics; the end redraws."""
        kind = event.get("event", "step")
        step = _number(event.get("step"))
        if kind == "step" and step is not None:
            self.add_losses(step, event.get("losses") or {})
        elif kind == "val" and step is not None:
            self.add_metrics(step, event.get("metrics") or {})
        elif kind in END_EVENTS:
            self.redraw()

    def clear(self) -> None:
        """Forget every point and redraw now."""
        self.losses.clear()
        self.metrics.clear()
        for line in self._lines.values():
            line.remove()
        self._lines.clear()
        self.redraw()

    def _add(self, store: dict[str, Series], step: float, values: dict[str, Any]) -> None:
        added = False
        for name, value in values.items():
            y = _number(value)
            if y is not None:
                _append(store.setdefault(str(name), []), float(step), y)
                added = True
        if added:
            self._schedule()

    # --- drawing ---------------------------------------------------------------
    def _schedule(self) -> None:
        """Redraw at most once every ``redraw_s`` seconds (one pending redraw at a time)."""
        if self._timer.isActive():
            return
        wait = self._last_draw + self.redraw_s - time.monotonic()
        self._timer.start(int(max(0.0, wait) * 1000))

    def redraw(self) -> None:
        """Put the buffered points on the axes and ask the canvas to draw when idle."""
        self._build(draw=False)  # (waits for the worker's import, if it still runs)
        self._timer.stop()
        self._last_draw = time.monotonic()
        self.n_draws += 1
        ax, axm = self.ax, self.ax_metric
        for key, series in self._series():
            line = self._lines.get(key) or self._new_line(key)
            line.set_data([x for x, _ in series], [y for _, y in series])
        ys = [y for s in self.losses.values() for _, y in s]
        scale = "log" if _wide(ys) else "linear"
        if ax.get_yscale() != scale:
            ax.set_yscale(scale, **({"nonpositive": "mask"} if scale == "log" else {}))
            ax.minorticks_off()  # decades are enough at this size; minor ticks cost ~5 ms
        for a in (ax, axm):
            a.relim()
            a.autoscale_view()
        metric_ys = [y for s in self.metrics.values() for _, y in s]
        if metric_ys and 0 <= min(metric_ys) and max(metric_ys) <= 1:
            axm.set_ylim(-0.02, 1.02)  # Dice, accuracy: keep the whole range in view
        axm.set_visible(bool(metric_ys))
        self._empty.set_visible(not ys and not metric_ys)
        self._legend()
        self.canvas.draw_idle()

    def _series(self) -> list[tuple[tuple[str, str], Series]]:
        out = [(("loss", name), s) for name, s in self.losses.items() if s]
        return out + [(("metric", name), s) for name, s in self.metrics.items() if s]

    def _new_line(self, key: tuple[str, str]) -> Any:
        kind, name = key
        if kind == "metric":
            color = METRIC_COLORS[len([k for k in self._lines if k[0] == "metric"]) % 4]
            (line,) = self.ax_metric.plot(
                [], [], color=color, marker="o", markersize=3, linewidth=0.6, linestyle=":"
            )
        elif name == "loss":
            (line,) = self.ax.plot([], [], color=TOTAL_COLOR, linewidth=1.6, zorder=3)
        else:
            n = len([k for k in self._lines if k[0] == "loss" and k[1] != "loss"])
            color = COMPONENT_COLORS[n % len(COMPONENT_COLORS)]
            (line,) = self.ax.plot([], [], color=color, linewidth=0.8, alpha=0.85)
        line.set_label(name)
        self._lines[key] = line
        return line

    def _legend(self) -> None:
        """Names, colours and last values, in a label above the figure: a matplotlib
        legend inside the axes hid the curves, and drawing one took a third of each
        redraw (about 9 of 30 ms)."""
        entries = []
        for key, series in self._series():
            line = self._lines[key]
            mark = "&#9679;" if key[0] == "metric" else "&#9473;"
            entries.append(
                f'<span style="color:{line.get_color()}">{mark}</span>&nbsp;'
                f"{html.escape(key[1])}&nbsp;{series[-1][1]:.3g}"
            )
        self.legend.setText(" &nbsp; ".join(entries))

    def _layout(self, _event: Any = None) -> None:
        """Margins in pixels (the dock's width varies)."""
        w, h = max(self.canvas.width(), 100), max(self.canvas.height(), 60)
        self.figure.subplots_adjust(left=40 / w, right=1 - 36 / w, bottom=26 / h, top=1 - 6 / h)

    def _style(self) -> None:
        for a in (self.ax, self.ax_metric):
            a.set_facecolor(BACKGROUND)
            a.tick_params(labelsize=7, colors=FOREGROUND, length=2, pad=1)
            for spine in a.spines.values():
                spine.set_color(GRID)
        self.ax_metric.patch.set_visible(False)  # the twin lies over the loss axes
        self.ax.grid(True, color=GRID, linewidth=0.5)
        self.ax.set_xlabel("step", fontsize=7, color=FOREGROUND, labelpad=1)
        self.ax.set_ylabel("loss", fontsize=7, color=FOREGROUND, labelpad=1)
        self.ax_metric.set_ylabel("validation", fontsize=7, color=FOREGROUND, labelpad=1)
        self.ax_metric.set_visible(False)
