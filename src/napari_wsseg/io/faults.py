"""Fault injection for the reliability tests: SIGKILL this process at a named point.

Code that must survive a crash calls :func:`point` at the moments worth testing
(between writing a file and renaming it, between two steps of registration). It does
nothing unless the environment variable ``NAPARI_WSSEG_FAULT`` names that point, which
only the tests in ``tests/reliability/`` set; ``NAPARI_WSSEG_FAULT_SKIP=n`` lets the
first ``n`` hits pass.
"""

from __future__ import annotations

import os
import signal

ENV = "NAPARI_WSSEG_FAULT"
SKIP_ENV = "NAPARI_WSSEG_FAULT_SKIP"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Die by SIGKILL here when ``NAPARI_WSSEG_FAULT`` is ``name`` (tests only)."""
    if os.environ.get(ENV) != name:
        return
    seen = _hits.get(name, 0)
    _hits[name] = seen + 1
    if seen < int(os.environ.get(SKIP_ENV, "0") or 0):
        return
    os.kill(os.getpid(), signal.SIGKILL)
