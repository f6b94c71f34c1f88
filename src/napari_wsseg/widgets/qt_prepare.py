"""The browser's spare layers made ahead, in idle time after a study's first case.

What is made and why: :mod:`._prepare`. Here, when: the kinds are read in a worker
once per study, the layers are added in spaced steps (:class:`.qt_steps.Steps`), and
a case being put on screen cancels them, so that no case open waits behind them; the
next case opened resumes what is left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from qtpy.QtCore import QObject, QSize, Qt, QThreadPool
from qtpy.QtGui import QMoveEvent, QResizeEvent
from qtpy.QtWidgets import QApplication, QWidget

from napari_wsseg.widgets import _case, _prepare, _slots, qt_layer_rows, qt_steps, qt_workers

if TYPE_CHECKING:
    import napari

STEP_GAP_MS = 40  # between two steps: input and paints are handled in between
MAX_WAIT_MS = 30_000  # for the docks' workers to end, before going on regardless
ENABLED = True  # a new browser's default (the widget tests turn it off but where tested)
GEOMETRY_STEP_S = 0.03  # of pending move and resize events sent, a step
_PENDING = (Qt.WidgetAttribute.WA_PendingMoveEvent, Qt.WidgetAttribute.WA_PendingResizeEvent)


def workers_running() -> bool:
    """A worker thread runs (napari's thread workers share Qt's global pool).

    The steps wait for it: a worker importing torch and MONAI (the Retrain dock's plan,
    Explain's first run) holds the GIL for up to 0.3 s at a time for seconds, and a
    step taken meanwhile stalled the UI 2-7x as long (1 s for ten glyphs)."""
    return QThreadPool.globalInstance().activeThreadCount() > 0


def pending(widget: QWidget) -> bool:
    """Qt holds a move or resize event for ``widget`` (it was never shown)."""
    return any(widget.testAttribute(flag) for flag in _PENDING)


def geometry_steps(window: QWidget, budget_s: float = GEOMETRY_STEP_S) -> Iterator[None]:
    """Send the move and resize events Qt holds for the widgets of ``window`` never
    shown (the spares' layer controls, menus, hidden dock pages), ``budget_s`` of them
    a step, as Qt would.

    Qt sends them all at once, for the whole window, the first time it paints a widget
    with a graphics effect (``QWidget::render``; napari draws a disabled layer control
    at half opacity, so a 2D case after a CT one): once the spares were made that was
    1500 widgets' layouts and a 60-120 ms stall in the first 2D case opened."""
    todo = [window, *window.findChildren(QWidget)]
    start = time.perf_counter()
    for widget in todo:
        try:  # what Qt sends (QWidgetPrivate::sendPendingMoveAndResizeEvents)
            if widget.testAttribute(_PENDING[0]):
                QApplication.sendEvent(widget, QMoveEvent(widget.pos(), widget.pos()))
                widget.setAttribute(_PENDING[0], False)
            if widget.testAttribute(_PENDING[1]):
                QApplication.sendEvent(widget, QResizeEvent(widget.size(), QSize()))
                widget.setAttribute(_PENDING[1], False)
        except RuntimeError:  # deleted since the list was taken
            continue
        if time.perf_counter() - start > budget_s:
            yield
            start = time.perf_counter()


class Prepare(QObject):
    """Spare layer pairs for the kinds of case a study holds (owned by the browser)."""

    def __init__(self, parent: QObject, viewer: napari.viewer.Viewer) -> None:
        super().__init__(parent)
        self.viewer = viewer
        qt_layer_rows.hide_spare_rows(viewer)  # no "spare ct image" rows to scroll past
        self.enabled = ENABLED
        self._steps = qt_steps.Steps(  # not finish_for's: a case open cancels it
            self, interval_ms=STEP_GAP_MS, wait_while=workers_running, max_wait_ms=MAX_WAIT_MS
        )
        self._kinds: dict[str, list] = {}  # study root -> kinds of its other modalities
        self._done: set[str] = set()
        self._reading: str | None = None
        _slots.case_opened(viewer).connect(lambda _e: self.cancel())

    @property
    def busy(self) -> bool:
        """The kinds are being read or the layers added."""
        return self._reading is not None or self._steps.busy

    def cancel(self) -> None:
        """Stop adding layers (a case is coming on screen); the next :meth:`after_open`
        goes on."""
        self._steps.cancel()

    def after_open(self, root: str, modality: str) -> None:
        """A case of ``modality`` of the study at ``root`` is on screen: make what is
        still missing, reading the study's kinds first."""
        root = str(root)
        if not self.enabled or root in self._done or self._reading == root:
            return
        if root not in self._kinds:
            self._reading = root
            qt_workers.start(
                self.parent(),  # the browser: its workers end with it
                _prepare.kinds_at,
                root,
                [modality],
                desc="prepare layers",
                returned=lambda kinds: self._read(root, kinds),
                errored=lambda _err: self._read(root, []),  # then fresh layers, as before
            )
            return
        self._start(root)

    def _read(self, root: str, kinds: list) -> None:
        self._reading = None
        self._kinds[root] = kinds
        self._start(root)

    def _start(self, root: str) -> None:
        if not self.enabled or self._steps.busy or _case.current_case(self.viewer) is None:
            return
        steps = self._steps_for(self._kinds[root])
        self._steps.start(steps, lambda: self._done.add(root), stepwise=True)

    def _steps_for(self, kinds: list) -> Iterator[None]:
        """All the steps, as one generator: a cancel closes each one's ``finally``."""
        # the kinds' readers were imported in a worker: a full collection over their
        # objects held a step 130-160 ms (``_slots.settle_heap``)
        _slots.settle_heap()
        yield from _prepare.glyph_steps(self.viewer)
        yield from _prepare.text_steps(self.viewer)
        yield from _prepare.prepare_steps(self.viewer, kinds)
        qt_viewer = _slots.qt_viewer(self.viewer)
        if qt_viewer is not None:
            yield from geometry_steps(qt_viewer.window())
