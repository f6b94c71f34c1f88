"""JSON-lines progress: one event a line, appended and flushed, read by the dock.

Events (key ``event``): ``start``, ``step``, ``val``, ``checkpoint``, ``done``,
``cancelled``, ``error``. Every line carries ``time`` (Unix seconds). Only rank 0
writes; other ranks get a writer that drops everything.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

PROGRESS = "progress.jsonl"
# A stop request the job reads after every step, like SIGTERM: it works for a job this
# process cannot signal (started by another viewer, on another host of a shared disk)
# and before the job has installed its signal handler. The job removes it on stopping.
STOP_REQUEST = "stop.request"


def request_stop(run_dir: str | Path) -> None:
    """Ask the job in ``run_dir`` to stop after its current step."""
    (Path(run_dir) / STOP_REQUEST).write_text(f"{time.time():.3f}\n")


def stop_requested(run_dir: str | Path) -> bool:
    """Whether someone asked the job in ``run_dir`` to stop."""
    return (Path(run_dir) / STOP_REQUEST).exists()


def clear_stop_request(run_dir: str | Path) -> None:
    """Forget a stop request (it was acted on, or a new attempt starts)."""
    (Path(run_dir) / STOP_REQUEST).unlink(missing_ok=True)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


class ProgressWriter:
    """Appends events to ``RUN_DIR/progress.jsonl`` (nothing when ``enabled`` is False)."""

    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / PROGRESS
        self.enabled = enabled
        self._fh = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115

    def emit(self, event: str, **fields: Any) -> None:
        if self._fh is None:
            return
        rec = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        self._fh.write(json.dumps(rec) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Throughput:
    """Samples/s over the last steps and an ETA from the mean step time."""

    def __init__(self, window: int = 20) -> None:
        self.times: deque[float] = deque(maxlen=window + 1)
        self.sizes: deque[int] = deque(maxlen=window)

    def tick(self, n_samples: int) -> None:
        self.times.append(time.perf_counter())
        self.sizes.append(n_samples)

    def start(self) -> None:
        self.times.clear()
        self.sizes.clear()
        self.times.append(time.perf_counter())

    def rate(self) -> tuple[float | None, float | None]:
        """(samples/s, seconds per step) over the window, None before two ticks."""
        if len(self.times) < 2:
            return None, None
        dt = self.times[-1] - self.times[0]
        steps = len(self.times) - 1
        if dt <= 0:
            return None, None
        return sum(list(self.sizes)[-steps:]) / dt, dt / steps


def read_progress(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete events of a run (a half-written last line is skipped)."""
    path = Path(run_dir) / PROGRESS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
