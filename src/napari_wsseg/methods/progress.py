"""Progress, partial results and cancel for long predictions, without changing
``Method.predict(model, image)``.

A caller (the CLI's bar, the viewer's explain worker) wraps the call::

    with reporting(on_progress, cancel=event.is_set):
        maps = method.predict(model, image)

and a streaming predictor (whole slides) calls :func:`report` after each block
with a :class:`Progress` and the partially filled :class:`~.base.Maps` (the same
arrays, filled in place: a viewer can refresh a layer from them). When
``cancel()`` turns True the predictor stops after the current block and returns
what is done (``Progress.cancelled``; tiles not reached are invalid in ``Maps.valid``).
The hook is a context variable, so each thread has its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """Where a prediction stands: ``done`` of ``total`` units (tiles), seconds spent."""

    done: int
    total: int
    elapsed: float
    unit: str = "tiles"
    stage: str = "predict"
    cancelled: bool = False
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def rate(self) -> float:
        """Units per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first unit)."""
        if self.done <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)


Callback = Callable[[Progress, Any], None]


@dataclass
class _Hook:
    callback: Callback | None
    cancel: Callable[[], bool] | None
    min_interval: float
    last: float = 0.0


_HOOK: ContextVar[_Hook | None] = ContextVar("wsseg_progress", default=None)


@contextlib.contextmanager
def reporting(
    callback: Callback | None,
    cancel: Callable[[], bool] | None = None,
    min_interval: float = 0.2,
) -> Iterator[None]:
    """Route the progress of predictions run inside this block to ``callback``.

    ``callback(progress, partial)`` is called at most every ``min_interval`` seconds
    (always for the last report); ``cancel()`` True asks the predictor to stop.
    """
    token = _HOOK.set(_Hook(callback, cancel, min_interval))
    try:
        yield
    finally:
        _HOOK.reset(token)


def report(progress: Progress, partial: Any = None) -> None:
    """Send ``progress`` to the active hook, rate-limited (no-op without a hook)."""
    hook = _HOOK.get()
    if hook is None or hook.callback is None:
        return
    now = time.monotonic()
    if progress.finished or progress.cancelled or now - hook.last >= hook.min_interval:
        hook.last = now
        hook.callback(progress, partial)


def cancelled() -> bool:
    """Whether the active hook asks the running prediction to stop."""
    hook = _HOOK.get()
    return bool(hook is not None and hook.cancel is not None and hook.cancel())
