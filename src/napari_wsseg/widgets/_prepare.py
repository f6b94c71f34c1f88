"""Spare layer pairs made ahead, for the kinds of case a study holds.

The first case of a kind in a session has no spare pair (:mod:`._slots`) and pays
napari's fresh layers: 115-230 ms for each of ``add_image`` and ``add_labels``
(vispy visual, a Labels layer's brush and polygon overlays, layer controls), more
than a case open may stall the UI. So once a study's first case is on screen, the
browser reads one image of each other modality in a worker (:func:`kinds_at`) and
then, in small steps while the user has not asked for anything else, adds a hidden
one-pixel spare pair for each kind it has no pair for (:func:`prepare_steps`). A
case open cancels what is left (it must not wait behind it); that kind then gets
fresh layers as before.

Before the layers come the glyphs (:func:`glyph_steps`): napari draws text (the
case legend, colorbar ticks, box labels) from a font atlas that renders each
character the first time one is drawn, 5-13 ms a character on the CPU; the first
X-ray legend (23 new characters) held one paint for 0.3 s.

The cost moves, it does not go, so it is cut fine: one step is the making of a
layer, its insert (without its layer controls and slow overlays), its controls, or
one slow overlay, or :data:`GLYPHS_A_STEP` glyphs, 40-90 ms each where a whole
layer was 120-240 ms. ``qt_prepare`` holds the steps back while a worker thread
runs (a step taken beside a worker importing torch stalled 2-7x as long).
Last, ``qt_prepare.geometry_steps`` sends the move and resize events Qt holds back for
widgets never shown (the spares' layer controls among them), which Qt would send all
at once in the first 2D case after a CT one (60-120 ms).
``docs/benchmarks.md`` gives both figures (issue 13).
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.widgets import _slots

if TYPE_CHECKING:
    import napari

    from napari_wsseg.io.base import ImageData


# napari measures text with "ÅÉÑŐ" (line height) and draws the space too
GLYPHS = "".join(c for c in string.printable if not c.isspace()) + " ÅÉÑŐ–—…·•≥≤±×°µ→←"
GLYPHS_A_STEP = 3  # 10-25 ms a glyph (vispy's distance field), a turn of the event loop
SLOW_OVERLAYS = ("polygon", "brush_stroke")  # a Labels layer's: 40-120 ms to make


def _font(viewer: napari.viewer.Viewer):
    """The font napari's canvas draws its text with (napari's Qt viewer and canvas are
    private: None without them, and the glyphs are then rendered when first drawn)."""
    canvas = getattr(_slots.qt_viewer(viewer), "canvas", None)
    info = canvas.font_info() if hasattr(canvas, "font_info") else None
    manager = getattr(info, "font_manager", None)
    if manager is None or not hasattr(manager, "get_font"):
        return None
    return manager.get_font(info.face)


def glyph_steps(viewer: napari.viewer.Viewer, glyphs: str = GLYPHS) -> Iterator[None]:
    """Render ``glyphs`` into the canvas's font atlas, :data:`GLYPHS_A_STEP` a step."""
    font = _font(viewer)  # a new one allocates its atlas: 10-80 ms
    if font is None:
        return
    yield
    for k in range(0, len(glyphs), GLYPHS_A_STEP):
        for char in glyphs[k : k + GLYPHS_A_STEP]:
            font[char]  # loads the glyph when the atlas lacks it
        yield


def text_steps(viewer: napari.viewer.Viewer) -> Iterator[None]:
    """Draw the canvas text overlay once (a space) when it has not shown yet: its
    text and box visuals build their GL programs at their first draw (50-80 ms, the
    first case with a legend)."""
    from napari_wsseg.widgets._display import text_overlay

    overlay = text_overlay(viewer)
    if overlay.visible:
        return
    text = overlay.text
    overlay.text, overlay.visible = " ", True
    try:
        yield  # a paint comes between two steps
    finally:
        if overlay.text == " ":  # nothing showed a legend meanwhile
            overlay.visible, overlay.text = False, text


def kind_of(image: ImageData, modality: str) -> dict[str, Any]:
    """What a layer pair needs to show ``image`` and its mask by a data update (small
    and picklable: a worker returns it; the fields :func:`._slots.image_fits` and
    :func:`._slots.mask_fits` compare)."""
    first = image.data[0] if image.multiscale else image.data
    return {
        "modality": modality,
        "ndim": int(image.ndim),
        "rgb": bool(image.rgb),
        "channels": int(first.shape[-1]) if image.rgb else 0,
        "multiscale": bool(image.multiscale),
        "dtype": np.dtype(first.dtype).str,
        "mask_ndim": len(_slots.empty_mask_shape(image, modality)),
    }


def kinds_at(root: str, skip: list[str]) -> list[dict[str, Any]]:
    """Worker: the kind of the first image of each modality of the study at ``root``
    but those in ``skip``; an image that cannot be read is left out (its case open
    says why)."""
    from napari_wsseg.io import read_image
    from napari_wsseg.study.store import Study

    kinds = []
    with Study.open(root) as study:
        firsts: dict[str, Any] = {}
        for rec in study.images():
            firsts.setdefault(rec.modality, rec)
        for modality, rec in firsts.items():
            if modality in skip:
                continue
            try:
                kinds.append(kind_of(read_image(rec.path, modality=modality), modality))
            except (OSError, ValueError):
                continue
    return kinds


def fits(image_layer, mask_layer, kind: dict[str, Any]) -> bool:
    """Whether an (image, mask) layer pair shows ``kind`` by a data update."""
    from napari.layers import Image, Labels

    return (
        isinstance(image_layer, Image)
        and isinstance(mask_layer, Labels)
        and image_layer.rgb == kind["rgb"]
        and image_layer.multiscale == kind["multiscale"]
        and image_layer.ndim == kind["ndim"]
        and np.dtype(image_layer.dtype) == np.dtype(kind["dtype"])
        and mask_layer.ndim == kind["mask_ndim"]
    )


def _one_pixel_image(kind: dict[str, Any]):
    """One-pixel data of ``kind`` (two levels for a pyramid), as a parked layer has."""
    nd, dtype = kind["ndim"], np.dtype(kind["dtype"])
    tail = (kind["channels"],) if kind["rgb"] else ()
    if kind["multiscale"]:
        return [np.zeros((2,) * nd + tail, dtype), np.zeros((1,) * nd + tail, dtype)]
    return np.zeros((1,) * nd + tail, dtype)


def _insert_hidden(viewer: napari.viewer.Viewer, layer) -> Callable[[], None]:
    """Insert ``layer`` at the bottom (where spares are kept) leaving the selection;
    returns what makes its layer controls (40-120 ms, a step of their own), a no-op
    where napari made them with the layer (its controls and layer list are private)."""
    layers = getattr(viewer, "__wrapped__", viewer).layers  # not the dock's proxy of it
    before = getattr(layers, "_activate_on_insert", None)  # napari's, private
    controls = getattr(_slots.qt_viewer(viewer), "controls", None)
    add = getattr(controls, "_add", None)
    widgets = getattr(controls, "widgets", None)
    defer = before is not None and add is not None and isinstance(widgets, dict)
    selected, active = list(layers.selection), layers.selection.active
    if before is not None:
        layers._activate_on_insert = False
    try:
        with layers.events.inserted.blocker(add) if defer else contextlib.nullcontext():
            layers.insert(0, layer)
    finally:
        if before is not None:
            layers._activate_on_insert = before
    if before is None:  # an older napari: the new layer was selected
        layers.selection.clear()
        layers.selection.update(selected)
        layers.selection.active = active

    def make_controls() -> None:
        if defer and layer not in widgets and layer in layers:
            add(SimpleNamespace(value=layer))  # all napari's handler reads of its event

    return make_controls


def prepare_steps(viewer: napari.viewer.Viewer, kinds: list[dict[str, Any]]) -> Iterator[None]:
    """Add a hidden spare pair for each of ``kinds`` that neither a spare pair nor the
    case on screen can show, one layer a step, at most :data:`._slots.MAX_SPARES`
    pairs in all; each one pixel on the first pixel of the case on screen (as a parked
    pair: it changes neither the sliders nor the fitted view). Stops when no case is
    on screen."""
    from napari.layers import Image, Labels

    from napari_wsseg.widgets._case import case_layers, current_case, mask_slot

    for kind in kinds:
        case = current_case(viewer)
        pairs = _slots._pairs(viewer)
        if case is None or len(pairs) >= _slots.MAX_SPARES:
            return
        shown = [ly for ly in case_layers(viewer) if ly.metadata.get("wsseg_role") == "image"]
        on_screen = [(shown[0], mask_slot(viewer))] if shown else []
        if any(fits(im, mk, kind) for im, mk in pairs + on_screen):
            continue
        pair = next(_slots._PAIR_IDS)
        what = f"spare {kind['modality']}"
        scale, translate = _slots.image_placement(case["image"])
        where = _slots._spare_placement(kind["ndim"], scale, translate)
        image = Image(
            _one_pixel_image(kind),
            rgb=kind["rgb"],
            multiscale=kind["multiscale"],
            name=f"{what} image",
            metadata={_slots.SPARE_KEY: "image", "wsseg_pair": pair},
            scale=where[0],
            translate=where[1],
        )
        yield  # making a layer: 10-40 ms, its insert: 50-150 ms more
        yield from _drawn_once(viewer, image)
        where = _slots._spare_placement(kind["mask_ndim"], scale, translate)
        mask = Labels(
            np.zeros((1,) * kind["mask_ndim"], np.uint8),
            name=f"{what} mask",
            metadata={_slots.SPARE_KEY: "mask", "wsseg_pair": pair},
            scale=where[0],
            translate=where[1],
        )
        yield
        yield from _drawn_once(viewer, mask)


def _polish_controls(viewer: napari.viewer.Viewer, layer) -> None:
    """Polish ``layer``'s controls (napari's style sheet on each of its widgets) now,
    not when the case that takes it first selects it. napari's Qt viewer is private:
    nothing happens without it."""
    controls = getattr(_slots.qt_viewer(viewer), "controls", None)
    widget = getattr(controls, "widgets", {}).get(layer)
    if widget is not None:
        widget.ensurePolished()
        widget.adjustSize()  # its layout, done once


def _slow_overlays(layer) -> list:
    """The overlays of ``layer`` napari makes a visual for when it is inserted that take
    long to make (napari's ``Layer._overlays``, private: none without it)."""
    overlays = getattr(layer, "_overlays", {})
    return [overlays[k] for k in SLOW_OVERLAYS if k in overlays and overlays[k].visible]


def _drawn_once(viewer: napari.viewer.Viewer, layer) -> Iterator[None]:
    """Insert ``layer`` as a spare, drawn once (transparent) before it is hidden: vispy
    builds a visual's GL program at its first draw (parsing the shader code, 30-140 ms
    on the CPU), which a hidden layer would leave to the case that takes it.

    A layer insert was one 120-240 ms stall, so it goes in steps: the layer with its
    slow overlays hidden (napari makes an overlay's visual when it is first visible)
    and without its layer controls, then the controls, then each overlay shown again
    in a step of its own."""
    opacity = layer.opacity
    layer.opacity = 0.0
    overlays = _slow_overlays(layer)
    for overlay in overlays:
        overlay.visible = False
    make_controls = None
    try:
        make_controls = _insert_hidden(viewer, layer)
        yield  # a paint comes between two steps
        make_controls()
        _polish_controls(viewer, layer)
        yield
        for overlay in overlays:
            overlay.visible = True
            yield
            overlays = overlays[1:]
    finally:
        if make_controls is not None:  # cancelled half-way: a case may take it at once
            make_controls()
        for overlay in overlays:
            overlay.visible = True
        layer.visible = False
        layer.opacity = opacity
        _slots.idle(layer, True)
