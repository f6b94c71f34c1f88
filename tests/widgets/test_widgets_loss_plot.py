"""The Retrain dock's loss plot: one line per loss, metrics on a twin axis, throttled redraws."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_wsseg.widgets.qt_loss_plot import MAX_KEPT, TOTAL_COLOR, QtLossPlot


@pytest.fixture
def plot(qtbot):
    widget = QtLossPlot()
    widget.resize(360, 180)
    qtbot.addWidget(widget)
    widget.show()
    return widget


def _step(step: int, **losses: float) -> dict:
    return {"event": "step", "step": step, "total_steps": 10, "losses": losses}


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:
    """Data of each line, by its label (the loss or metric name)."""
    return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()}


def test_each_loss_a_line_and_validation_metrics_on_the_twin_axis(plot):
    for s in range(1, 5):
        plot.add_event(_step(s, loss=2.0 / s, l_global=1.0 / s))
    plot.add_event(_step(5, loss=0.5, l_global=None))  # a non-finite value, cleaned to None
    plot.add_event({"event": "val", "step": 5, "metrics": {"dice": 0.25, "accuracy": 0.75}})
    plot.add_event({"event": "checkpoint", "step": 5, "path": "x"})  # no data: ignored
    plot.redraw()

    lines = _lines(plot.ax)
    assert set(lines) == {"loss", "l_global"}
    assert lines["loss"] == ([1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 2 / 3, 0.5, 0.5])
    assert lines["l_global"] == ([1.0, 2.0, 3.0, 4.0], [1.0, 0.5, 1 / 3, 0.25])
    assert plot.points == list(zip(*lines["loss"]))  # the API the dock's tests use
    # the total is drawn thicker than its components
    widths = {ln.get_label(): ln.get_linewidth() for ln in plot.ax.get_lines()}
    assert widths["loss"] > widths["l_global"]
    metrics = _lines(plot.ax_metric)
    assert metrics == {"dice": ([5.0], [0.25]), "accuracy": ([5.0], [0.75])}
    assert all(ln.get_marker() == "o" for ln in plot.ax_metric.get_lines())
    assert plot.ax_metric.get_visible() and plot.ax.get_yscale() == "linear"  # span 8x
    legend = plot.legend.text()  # names, line colours and last values
    for name, value in [("loss", 0.5), ("l_global", 0.25), ("dice", 0.25), ("accuracy", 0.75)]:
        assert f"{name}&nbsp;{value}" in legend
        assert plot.ax.get_lines()[0].get_color() in legend

    # rendered: the total loss's colour is on the canvas
    plot.canvas.draw()
    rgb = np.asarray(plot.canvas.buffer_rgba())[..., :3].reshape(-1, 3).astype(int)
    want = np.array([int(TOTAL_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(rgb - want).sum(axis=1) < 30).sum() > 20


def test_log_scale_when_losses_span_more_than_20x_and_clear_resets(plot):
    for s, v in enumerate([10.0, 3.0, 1.0, 0.3, 0.1], start=1):
        plot.add_event(_step(s, loss=v, l_reg=v / 10))
    plot.redraw()
    assert plot.ax.get_yscale() == "log"  # 10 .. 0.01
    # a diagnostic that counts (0 .. 60) next to a loss near 1, both 0 at a step: log
    plot.clear()
    for s, n in enumerate([60.0, 0.0, 12.0], start=1):
        plot.add_event(_step(s, loss=1.0 / s if n else 0.0, active_pairs=n))
    plot.redraw()
    assert plot.ax.get_yscale() == "log"
    plot.clear()
    for s in range(1, 4):
        plot.add_event(_step(s, loss=1.0 - s / 2, l_reg=100.0))  # a negative value: linear
    plot.redraw()
    assert plot.ax.get_yscale() == "linear"
    plot.clear()
    assert plot.points == [] and plot.ax.get_lines() == [] and plot.legend.text() == ""
    for s in range(1, 4):
        plot.add(s, 1.0 + s)  # 2 .. 4: linear again
    plot.redraw()
    assert plot.ax.get_yscale() == "linear" and plot.points == [(1, 2), (2, 3), (3, 4)]
    assert not plot.ax_metric.get_visible()  # no validation yet


def test_a_resumed_job_replaces_the_steps_it_repeats(plot):
    for s in range(1, 6):
        plot.add(s, float(s))
    plot.add(3, 30.0)  # resumed from a checkpoint at step 2
    assert plot.points == [(1, 1), (2, 2), (3, 30)]


def test_long_series_are_averaged_in_pairs(plot):
    for s in range(1, MAX_KEPT + 2):
        plot.add(s, float(s))
    assert len(plot.points) == MAX_KEPT // 2 + 1
    assert plot.points[0] == (1.5, 1.5) and plot.points[-1] == (MAX_KEPT + 1, MAX_KEPT + 1)


def test_redraws_at_most_once_an_interval_and_at_once_when_the_job_ends(qtbot):
    plot = QtLossPlot(redraw_s=0.6)
    qtbot.addWidget(plot)
    plot.add(1, 1.0)
    qtbot.waitUntil(lambda: plot.n_draws == 1, timeout=2000)  # the first point: soon
    for s in range(2, 40):
        plot.add(s, 1.0 / s)
    qtbot.wait(200)
    assert plot.n_draws == 1  # buffered, not drawn per event
    assert len(plot.ax.get_lines()[0].get_xdata()) == 1
    qtbot.waitUntil(lambda: plot.n_draws == 2, timeout=3000)
    assert len(plot.ax.get_lines()[0].get_xdata()) == 39
    plot.add(40, 0.01)
    plot.add_event({"event": "done", "step": 40, "metrics": {}})
    assert plot.n_draws == 3 and len(plot.ax.get_lines()[0].get_xdata()) == 40
    qtbot.wait(800)
    assert plot.n_draws == 3  # the pending redraw was folded into the final one


def test_importing_the_docks_does_not_import_matplotlib():
    code = (
        "import sys, napari_wsseg\n"
        "from napari_wsseg.widgets import qt_retrain, qt_loss_plot\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matplotlib_loads_in_a_worker_and_the_figure_takes_the_placeholder_place(qtbot):
    """The dock opens without importing matplotlib on the UI thread (0.5 s); the figure
    comes when the worker's import returns, with the points that came before it."""
    plot = QtLossPlot(redraw_s=60)  # no timed redraw in this test
    qtbot.addWidget(plot)
    assert plot.canvas is None and plot.layout().count() == 2
    plot.add(1, 2.0)
    plot._timer.stop()  # only the build may draw it
    qtbot.waitUntil(lambda: plot.canvas is not None, timeout=30_000)
    assert plot.layout().indexOf(plot.canvas) == 1 and plot.layout().count() == 2
    assert plot.n_draws == 1 and list(plot.ax.get_lines()[0].get_xdata()) == [1]
