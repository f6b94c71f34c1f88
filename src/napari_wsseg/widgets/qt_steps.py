"""Work in steps on the UI thread, one step per turn of the event loop.

A generator yields between its steps; between two, Qt paints and handles input, so
no single stall holds all the work (a case of another kind put on screen:
``_put.put_case_steps``). One sequence at a time: a new one first runs the last
one's rest at once, so two never interleave; code that changes the case layers by
another way (the Explain dock's Suggest list) calls :func:`finish_for` first.
Work that may be dropped (spare layers made ahead: ``qt_prepare``) is cancelled
instead (:meth:`Steps.cancel`), its steps spaced (``interval_ms``) so that input is
handled between them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

from qtpy.QtCore import QObject, QTimer

_BY_VIEWER: dict[int, weakref.WeakSet] = {}


def finish_for(viewer) -> None:
    """Run the rest of every sequence under way on ``viewer`` now."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get napari's proxy of it
    for steps in list(_BY_VIEWER.get(id(viewer), ())):
        steps.finish()


class Steps(QObject):
    """Runs a step generator and then a callback; the timer goes with ``parent``;
    :func:`finish_for` ``viewer`` finishes it."""

    def __init__(
        self,
        parent: QObject,
        viewer=None,
        interval_ms: int = 0,
        wait_while: Callable[[], bool] | None = None,
        max_wait_ms: int = 30_000,
    ) -> None:
        """``wait_while``: a step waits (another ``interval_ms``) while it returns True,
        at most ``max_wait_ms`` in all for a sequence (idle work that must not compete
        with a worker for the GIL: ``qt_prepare``)."""
        super().__init__(parent)
        if viewer is not None:
            model = getattr(viewer, "__wrapped__", viewer)
            key = id(model)
            if key not in _BY_VIEWER:
                _BY_VIEWER[key] = weakref.WeakSet()
                weakref.finalize(model, _BY_VIEWER.pop, key, None)
            _BY_VIEWER[key].add(self)
        self._job: tuple[Iterator[None], Callable[[], None]] | None = None
        self._wait_while = wait_while
        self._max_waits = self._waits_left = max_wait_ms // max(1, interval_ms)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._next)

    @property
    def busy(self) -> bool:
        """A sequence is under way (started, its callback not yet run)."""
        return self._job is not None

    def start(self, steps: Iterator[None], then: Callable[[], None], stepwise: bool) -> None:
        """Run ``steps`` (at once unless ``stepwise``: the first step now, each next one
        in a later turn), then ``then``; the sequence under way is finished first."""
        self.finish()
        self._job = (steps, then)
        self._waits_left = self._max_waits
        if stepwise:
            self._next()
        else:
            self.finish()

    def finish(self) -> None:
        """Run the rest of the sequence under way now."""
        if self._job is None:
            return
        self._timer.stop()
        steps, then = self._job
        self._job = None
        for _ in steps:
            pass
        then()

    def cancel(self) -> None:
        """Drop the rest of the sequence under way (its ``finally`` blocks run), and its
        callback."""
        if self._job is None:
            return
        self._timer.stop()
        steps, _then = self._job
        self._job = None
        close = getattr(steps, "close", None)
        if close is not None:
            close()

    def _next(self) -> None:
        if self._job is None:
            return
        if self._wait_while is not None and self._waits_left > 0 and self._wait_while():
            self._waits_left -= 1
            self._timer.start()
            return
        steps, then = self._job
        try:
            next(steps)
        except StopIteration:
            self._job = None
            then()
            return
        self._timer.start()
