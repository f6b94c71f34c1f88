"""A running prediction seen from the viewer: progress, a heatmap that fills in, cancel.

The explain worker runs ``method.predict`` inside
:func:`napari_wsseg.methods.progress.reporting` with a :class:`LiveRun` as the
callback; streaming predictors (whole slides) report after each block with the
partially filled maps (the same arrays they fill in place). The dock's timer, on
the Qt thread, reads the latest report: :func:`progress_text` for the progress
bar and :func:`show_partial`, which adds the first map as a layer once and then
only refreshes it. ``cancel()`` asks the predictor to stop after its block; it
returns what is done, which the dock then shows as the result. No Qt here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_wsseg.methods.base import Maps
from napari_wsseg.widgets._layerdata import MAP_KEY, map_layers

if TYPE_CHECKING:
    import napari

    from napari_wsseg.methods.progress import Progress

PARTIAL_KEY = "wsseg_partial"


class LiveRun:
    """Latest progress and partial maps of one prediction (written by the worker)."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.partial: Maps | None = None
        self.stop = False

    def __call__(self, progress: Progress, partial: Any = None) -> None:
        # two attribute stores: the Qt-side reader sees the old or the new report
        self.partial = partial if isinstance(partial, Maps) else self.partial
        self.progress = progress

    def cancel(self) -> None:
        """Ask the predictor to stop after its current block (it keeps what is done)."""
        self.stop = True

    def cancelled(self) -> bool:
        return self.stop

    @property
    def streaming(self) -> bool:
        """Whether the predictor streams partial maps (then a cancel keeps them)."""
        return self.partial is not None


def progress_text(p: Progress) -> str:
    """``42 %: 1234/5678 tiles, 812 tiles/s, ETA 0:12``."""
    from napari_wsseg.training.progress_bar import format_seconds

    eta = "cancelling" if p.cancelled else f"ETA {format_seconds(p.eta)}"
    return f"{100 * p.fraction:.0f} %: {p.done}/{p.total} {p.unit}, {p.rate:.0f} {p.unit}/s, {eta}"


def show_partial(viewer: napari.viewer.Viewer, live: LiveRun, method: str, case: dict) -> bool:
    """Add (first call) or refresh the heatmap of the partial maps; False if none yet."""
    maps = live.partial
    if maps is None or not maps.maps:
        return False
    name = next(n for n in maps.maps if n != maps.mask) if len(maps.maps) > 1 else maps.mask
    for layer in list(viewer.layers):
        if layer.metadata.get(PARTIAL_KEY) == name:
            if layer.data is maps.maps[name]:
                layer.refresh()  # same array, filled in place by the worker
                return True
            viewer.layers.remove(layer)  # left by an earlier, superseded run
    one = Maps(maps={name: maps.maps[name]}, grids=dict(maps.grids), mask=None)
    source = f"{case['study']}#{case['image_id']}"
    for data, kwargs, _kind in map_layers(one, case["image"], method, source):
        kwargs["contrast_limits"] = (0.0, 1.0)  # probabilities; the map starts all zero
        kwargs["visible"] = True
        kwargs["metadata"][PARTIAL_KEY] = name
        kwargs["metadata"][MAP_KEY] = name  # removed with the other maps by show_maps
        viewer.add_image(data, **kwargs)
    return True
