"""Workers that end with their widget.

A ``thread_worker`` whose handlers outlive the dock that started it aborts napari:
a result delivered to a deleted widget, or a worker still running while Python
shuts down (``RuntimeError: wrapped C/C++ object of type WorkerBaseSignals has
been deleted``, ``Fatal Python error: Aborted``). Every dock starts its workers
through :func:`start`, which

- ties the worker to the widget: when the widget is destroyed (its viewer closed)
  the worker is asked to quit and its signals are disconnected, so nothing reaches
  the dead widget;
- makes a worker still queued in the thread pool stop before it runs, once asked;
- waits, when the application quits or the interpreter exits, for the workers
  still running (a prediction cannot be interrupted half-way), before Qt and
  Python tear down the objects they would emit on;
- shows the work in napari's activity panel (``desc``).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QThreadPool

_SIGNALS = ("started", "yielded", "returned", "errored", "warned", "aborted", "finished")
_WAIT_AT_EXIT_MS = 120_000
_hooked = False


def _abortable(fn: Callable, args: tuple, kwargs: dict):
    """``fn(*args, **kwargs)`` as a generator worker's body: its first ``yield`` is
    where a worker asked to quit while still queued stops without running ``fn``."""

    def body():
        yield None
        return fn(*args, **kwargs)

    return body


def start(
    owner: QObject,
    fn: Callable,
    *args: Any,
    desc: str | None = None,
    returned: Callable | None = None,
    errored: Callable | None = None,
    finished: Callable | None = None,
    **kwargs: Any,
):
    """Run ``fn(*args, **kwargs)`` in a worker owned by ``owner``; returns the worker.

    ``returned`` / ``errored`` / ``finished`` are connected before the start (errors
    go to ``errored``, never re-raised on the Qt thread); ``desc`` names the work in
    the activity panel.
    """
    worker = build(owner, fn, *args, desc=desc, **kwargs)
    if returned is not None:
        worker.returned.connect(returned)
    if errored is not None:
        worker.errored.connect(errored)
    if finished is not None:
        worker.finished.connect(finished)
    worker.start()
    return worker


def build(owner: QObject, fn: Callable, *args: Any, desc: str | None = None, **kwargs: Any):
    """The worker :func:`start` runs, owned by ``owner`` and not started yet (for
    handlers that need the worker itself)."""
    from napari.qt.threading import create_worker

    progress = {"desc": desc} if desc else False
    worker = create_worker(_abortable(fn, args, kwargs), _ignore_errors=True, _progress=progress)
    return own(owner, worker)


def own(owner: QObject, worker) -> Any:
    """Stop and disconnect ``worker`` when ``owner`` is destroyed; returns the worker."""
    _hook_exit()
    bag = owner.__dict__.get("_wsseg_workers")
    if bag is None:
        bag = owner.__dict__["_wsseg_workers"] = set()
        # a closure over the set, not over the widget: it must run while the widget dies
        owner.destroyed.connect(lambda *_a, bag=bag: stop_all(bag))
    bag.add(worker)
    worker.finished.connect(lambda w=worker, b=bag: b.discard(w))
    return worker


def stop(worker) -> None:
    """Ask ``worker`` to quit and cut it from every handler (it may still finish)."""
    if worker is None:
        return
    try:
        worker.quit()
        for name in _SIGNALS:
            try:
                getattr(worker.signals, name).disconnect()
            except (TypeError, RuntimeError):
                pass  # nothing connected, or the signals object is already gone
    except RuntimeError:
        pass


def stop_all(bag: set) -> None:
    """Stop every worker of one widget."""
    for worker in list(bag):
        stop(worker)
    bag.clear()


def owned(owner: QObject) -> set:
    """The workers of ``owner`` that have not finished yet."""
    return set(owner.__dict__.get("_wsseg_workers") or ())


def wait_for_workers(msecs: int = _WAIT_AT_EXIT_MS) -> bool:
    """Block until the thread pool's workers have ended (True) or ``msecs`` passed."""
    return bool(QThreadPool.globalInstance().waitForDone(msecs))


def _hook_exit() -> None:
    global _hooked
    if _hooked:
        return
    _hooked = True
    # registered after PyQt's own exit handler, so it runs before Qt objects go
    atexit.register(wait_for_workers)
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(lambda: wait_for_workers())
