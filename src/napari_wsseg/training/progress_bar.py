"""A text progress bar with ETA for ``wsseg predict`` on large inputs.

Fed by :func:`napari_wsseg.methods.progress.reporting`; on a terminal it redraws
one line (``\\r``), elsewhere (logs, pipes) it prints a line every 10 %.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from napari_wsseg.methods.progress import Progress


def format_seconds(s: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss``); ``?`` when unknown."""
    if s is None:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def format_progress(p: Progress, width: int = 30) -> str:
    """``[#####.....]  45%  1234/2700 tiles  812 tiles/s  ETA 0:12``."""
    n = int(p.fraction * width)  # floor: the bar never runs ahead
    bar = "#" * n + "." * (width - n)
    tail = "cancelled" if p.cancelled else f"ETA {format_seconds(p.eta)}"
    if p.finished:
        tail = f"done in {format_seconds(p.elapsed)}"
    return (
        f"[{bar}] {100 * p.fraction:3.0f}%  {p.done}/{p.total} {p.unit}  "
        f"{p.rate:.0f} {p.unit}/s  {tail}"
    )


class ProgressBar:
    """Callable for ``reporting``: draws the bar for one input labelled ``label``."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = False
        self._decile = -1

    def __call__(self, progress: Progress, partial: Any = None) -> None:
        line = f"{self.label}: {format_progress(progress)}"
        if self.tty:
            self.stream.write("\r" + line)
        else:
            decile = int(progress.fraction * 10)
            if decile == self._decile and not (progress.finished or progress.cancelled):
                return
            self._decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """End the bar's line if a redraw left it open."""
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
