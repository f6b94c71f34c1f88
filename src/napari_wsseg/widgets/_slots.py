"""Case layers reused from one case to the next, so opening a case does not block the UI.

napari runs a full ``gc.collect()`` for every layer removed (``VispyCanvas._remove_layer``,
a Windows GL fix): 0.7 s a layer with torch and napari on the heap, and adding a
layer costs another 0.1-0.4 s. So a case change updates the image layer and the
mask's Labels layer in place (data, scale, translate, contrast, name, metadata)
when the new case fits them, and a case without a stored mask keeps an empty
Labels layer (a placeholder, source ``"none"``: :func:`is_placeholder`) that one
can paint on. A layer whose kind changes (ndim, RGB, multiscale, dtype) is never
mutated into the other kind (vispy keeps the old node type). Instead the pair on
screen is *parked* (:func:`park`): hidden, its pixels swapped for one pixel (the
memory goes), placed on the new case's first pixel (so it changes neither the
sliders' ranges nor the fitted view: napari counts hidden layers in both), and
kept at the bottom of the layer list as a spare; a later case of that kind takes
it back (:func:`take_spare`) instead of paying napari's 0.1-0.25 s a fresh layer
(vispy visual, Labels overlays, layer controls) and the collection of a removal.
At most :data:`MAX_SPARES` pairs are kept. The layers that go (the last case's
maps, boxes, predictions) go in one ``batched_update`` (one collection, not one
per layer).

No dock holds another: they learn of a case change from :func:`case_opened`, as well
as from ``viewer.layers.events.inserted`` (no layer is inserted on a reuse).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import sys
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets._layerdata import CASE_KEY

if TYPE_CHECKING:
    import napari

    from napari_wsseg.io.base import ImageData

PLACEHOLDER = "none"  # wsseg_source of the empty mask a case without one gets
SPARE_KEY = "wsseg_spare"  # a parked layer's metadata: "image" or "mask", and its pair
MAX_SPARES = 6  # parked image + mask pairs kept (one per kind of case: a handful)
MAX_EMPTY_SIDE = 2048  # a slide's empty mask: the first pyramid level this small

_EMITTERS: dict[int, Any] = {}
_PAIR_IDS = itertools.count(1)
_FROZEN_AT = [0]  # len(sys.modules) at the last gc.freeze()


def case_opened(viewer: napari.viewer.Viewer):
    """The viewer's "a case was put on screen" event (``value``: the image id)."""
    from napari.utils.events import EventEmitter

    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get napari's proxy of it
    key = id(viewer)
    emitter = _EMITTERS.get(key)
    if emitter is None:
        emitter = _EMITTERS[key] = EventEmitter(source=None, type_name="case_opened")
        weakref.finalize(viewer, _EMITTERS.pop, key, None)
    return emitter


def qt_viewer(viewer: napari.viewer.Viewer):
    """napari's Qt viewer (private), or None."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # docks get napari's proxy of it
    return getattr(getattr(viewer, "window", None), "_qt_viewer", None)


def image_fits(layer, image: ImageData) -> bool:
    """Whether ``layer`` can show ``image`` by a data update (same kind of layer)."""
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.rgb != image.rgb:
        return False
    if layer.multiscale != image.multiscale or layer.ndim != image.ndim:
        return False
    first = image.data[0] if image.multiscale else image.data
    return np.dtype(layer.dtype) == np.dtype(first.dtype)


@contextlib.contextmanager
def batched(viewer: napari.viewer.Viewer, layers: list, sliders: bool = True):
    """A context in which ``layers`` neither re-slice nor make napari recompute the
    sliders on each data, scale or translate change: one refresh each at the end,
    then one recompute of the sliders (ranges, steps, labels over all layers), or
    none with ``sliders=False`` (the caller's next batch does it).

    Each setter would otherwise slice and upload the data again, and napari's slider
    recompute costs 8-15 ms a change; more, it runs on the data event, before a
    blocked refresh has updated the layer's extent, so without the recompute at the
    end the sliders kept the last case's range (a CT with other slice counts)."""
    recompute = _slider_handler(viewer)
    with contextlib.ExitStack() as stack:
        for layer in layers:
            block = getattr(layer, "_block_refresh", None)  # napari >= 0.5
            if block is not None:
                stack.enter_context(block())
            if recompute is not None:
                for name in ("data", "scale", "translate"):
                    stack.enter_context(getattr(layer.events, name).blocker(recompute))
        yield
    for layer in layers:
        layer.refresh()  # a hidden layer: none (its extent: from scale and translate)
    if sliders:
        recompute_sliders(viewer)


def _slider_handler(viewer: napari.viewer.Viewer):
    """napari's slider recompute (``ViewerModel._on_layers_change``, private), or None."""
    return getattr(getattr(viewer, "__wrapped__", viewer), "_on_layers_change", None)


def recompute_sliders(viewer: napari.viewer.Viewer) -> None:
    """napari's slider recompute over all layers (ranges, steps, labels)."""
    recompute = _slider_handler(viewer)
    if recompute is not None:
        recompute()
    else:  # the public event napari recomputes the sliders on (and redraws)
        model = getattr(viewer, "__wrapped__", viewer)
        model.layers.events.reordered(value=model.layers)


def image_placement(image: ImageData) -> tuple[tuple, tuple]:
    """The scale and translate an image layer of ``image`` gets (unit, 0 when unset)."""
    nd = image.ndim
    scale = tuple(image.scale) if image.scale else (1.0,) * nd
    translate = tuple(image.translate) if image.translate else (0.0,) * nd
    return scale, translate


def place(layer, scale: tuple, translate: tuple) -> None:
    """Set scale and translate, each only when it changes (each set re-fits the dims)."""
    if not np.allclose(layer.scale, scale):
        layer.scale = scale
    if not np.allclose(layer.translate, translate):
        layer.translate = translate


def update_image(
    viewer: napari.viewer.Viewer,
    layer,
    image: ImageData,
    name: str,
    metadata: dict,
    sliders: bool = True,
    opacity: float = 1.0,
) -> None:
    """Show ``image`` in ``layer`` as a fresh ``add_image`` would (display settings the
    user changed on the last case are reset); ``sliders=False``: the sliders are
    recomputed by the caller's next batch (the mask's: one relayout, not two);
    ``opacity`` 0: drawn unseen, for a caller that fits the view a step later."""
    with batched(viewer, [layer], sliders=sliders):
        layer.metadata = metadata
        layer.data = image.data
        place(layer, *image_placement(image))
        if not image.rgb:
            if layer.colormap.name != "gray":
                layer.colormap = "gray"
            if image.contrast_limits is not None:
                lims = [float(v) for v in image.contrast_limits]
                layer.contrast_limits_range = lims
                layer.contrast_limits = lims
            else:
                layer.reset_contrast_limits_range()
                layer.reset_contrast_limits()
            layer.gamma = 1.0
        if layer.opacity != opacity:
            layer.opacity = opacity
        if not layer.visible:
            layer.visible = True
        if layer.name != name:
            layer.name = name


def empty_mask_shape(image: ImageData, modality: str) -> tuple[int, ...]:
    """The placeholder mask's shape: the image's (a slide's at a level at most
    :data:`MAX_EMPTY_SIDE` wide, like its stored masks), X-rays one plane a finding."""
    shape = tuple(image.spatial_shape)
    if image.multiscale:
        levels = [tuple(a.shape[: image.ndim]) for a in image.data]
        shape = next((s for s in levels if max(s) <= MAX_EMPTY_SIDE), levels[-1])
    if modality == "xray":
        shape = (len(labels_for("xray")), *shape)
    return shape


def empty_mask(image: ImageData, modality: str) -> np.ndarray:
    """Zeros for the placeholder (``np.zeros``: pages are touched only when painted)."""
    return np.zeros(empty_mask_shape(image, modality), dtype=np.uint8)


def is_placeholder(layer) -> bool:
    """An empty mask layer of a case without a stored mask, not painted on."""
    meta = layer.metadata
    return meta.get("wsseg_source") == PLACEHOLDER and not meta.get("wsseg_dirty")


def mask_fits(layer, data: np.ndarray) -> bool:
    """Whether the Labels ``layer`` can take ``data`` by a data update."""
    from napari.layers import Labels

    return isinstance(layer, Labels) and layer.ndim == data.ndim


def update_labels(
    viewer: napari.viewer.Viewer,
    layer,
    data: np.ndarray,
    scale: tuple,
    translate: tuple,
    sliders: bool = True,
) -> None:
    """New pixels and placement for a reused Labels layer; its undo history goes
    (an undo must not paint the last case's strokes into this one)."""
    with batched(viewer, [layer], sliders=sliders):
        layer.data = data
        place(layer, scale, translate)
    reset = getattr(layer, "_reset_history", None)
    if reset is not None:
        reset()


def drop(viewer: napari.viewer.Viewer, layers: list) -> None:
    """Remove ``layers`` in one batch: napari then collects garbage once, not per layer."""
    layers = [ly for ly in layers if ly in viewer.layers]
    if not layers:
        return  # an empty batch would still run the collection
    with viewer.layers.batched_update():
        for layer in layers:
            viewer.layers.remove(layer)


def settle_heap() -> bool:
    """``gc.freeze()`` the heap when modules were imported since the last freeze (True
    when it froze); called between dropping the last case's layers and adding the new.

    napari's full ``gc.collect()`` per removed layer scans every tracked object: ~500k
    with torch, napari and the docks loaded, 0.3-0.6 s a change of case kind. Frozen
    objects (CPython's permanent generation) are skipped by every later collection, so
    it then scans only what came after: the case layers, a few thousand objects.
    The cost, accepted: a frozen object is still freed when its reference count drops
    to zero, but one that ends up in a garbage *cycle* is never collected. What is
    frozen here is mostly for the life of the process (modules, docks, loaded models,
    the two reused case layers); the last case's layers are already dropped and
    collected by then, and the new ones come after. So at most the two reused layers,
    once replaced, stay in memory per freeze, and a freeze happens only after imports
    (a handful of times a session: first case, first Explain, first Retrain).
    """
    if len(sys.modules) <= _FROZEN_AT[0]:
        return False
    gc.freeze()
    _FROZEN_AT[0] = len(sys.modules)
    return True


def _no_update(*args, **kwargs) -> None:
    """A parked layer's ``_update_draw`` (:func:`idle`)."""


def _kind(layer) -> str:
    """A short name of what a parked layer can show, for the layer list."""
    from napari.layers import Labels

    if isinstance(layer, Labels):
        return f"{layer.ndim}D labels"
    rgb = " RGB" if layer.rgb else ""
    pyramid = " pyramid" if layer.multiscale else ""
    return f"{layer.ndim}D{rgb} {np.dtype(layer.dtype).name}{pyramid} image"


def _one_pixel(layer):
    """Data of ``layer``'s kind with one pixel (two levels for a pyramid)."""
    from napari.layers import Labels

    nd = layer.ndim
    if isinstance(layer, Labels):
        return np.zeros((1,) * nd, dtype=layer.data.dtype)
    first = layer.data[0] if layer.multiscale else layer.data
    tail = (first.shape[-1],) if layer.rgb else ()  # RGB or RGBA
    dtype = layer.dtype
    if layer.multiscale:
        return [np.zeros((2,) * nd + tail, dtype), np.zeros((1,) * nd + tail, dtype)]
    return np.zeros((1,) * nd + tail, dtype)


def _spare_placement(ndim: int, scale: tuple, translate: tuple) -> tuple[tuple, tuple]:
    """``scale`` and ``translate`` of a case right-aligned to ``ndim`` axes (a leading
    axis the case lacks: unit scale at 0, one step on a slider that is then hidden)."""
    extra = ndim - len(scale)
    if extra < 0:
        return tuple(scale[-ndim:]), tuple(translate[-ndim:])
    return (1.0,) * extra + tuple(scale), (0.0,) * extra + tuple(translate)


def spares(viewer: napari.viewer.Viewer) -> list:
    """The parked layers, bottom to top."""
    return [ly for ly in viewer.layers if SPARE_KEY in ly.metadata]


def park(
    viewer: napari.viewer.Viewer,
    image_layer,
    mask_layer,
    scale: tuple,
    translate: tuple,
    sliders: bool = True,
) -> None:
    """Hide the last case's image and mask layers as a spare pair for a later case of
    their kind: one pixel each, on the next case's first pixel (``scale``, ``translate``
    of its image), no case metadata (no dock sees them as the case). ``sliders=False``:
    the caller recomputes the sliders later (:func:`batched`)."""
    for _ in park_steps(viewer, image_layer, mask_layer, scale, translate, sliders):
        pass


def park_steps(
    viewer: napari.viewer.Viewer,
    image_layer,
    mask_layer,
    scale: tuple,
    translate: tuple,
    sliders: bool = True,
) -> Iterator[None]:
    """:func:`park` in two steps (the pixels, then the rest), for a caller that lets
    the UI run between them."""
    pair = next(_PAIR_IDS)  # not id(): a deleted layer's id can come back
    # the pixels are swapped while visible: napari updates a hidden layer's extent
    # only when it is shown again, and the sliders would keep the last case's range
    with batched(viewer, [image_layer, mask_layer], sliders=sliders):
        for layer in (image_layer, mask_layer):
            layer.data = _one_pixel(layer)
            place(layer, *_spare_placement(layer.ndim, scale, translate))
    yield  # one pixel each: the last case is off screen
    modality = (image_layer.metadata.get(CASE_KEY) or {}).get("modality")
    with one_scene_update(viewer):
        _hide_as_spares(image_layer, mask_layer, modality, pair)
    pairs = _pairs(viewer)
    kept = {id(ly) for p in pairs[-MAX_SPARES:] for ly in p}
    drop(viewer, [ly for ly in spares(viewer) if id(ly) not in kept])  # oldest, halves


def _hide_as_spares(image_layer, mask_layer, modality: str | None, pair: int) -> None:
    for layer, what in ((image_layer, "image"), (mask_layer, "mask")):
        watched = {k: v for k, v in layer.metadata.items() if k == "wsseg_watched"}
        reset = getattr(layer, "_reset_history", None)
        if reset is not None:
            reset()
        layer.visible = False
        layer.metadata = {**watched, SPARE_KEY: what, "wsseg_pair": pair}
        idle(layer, True)
        # hidden; the next case of its kind (most often the modality's) takes it
        layer.name = f"spare {modality} {what}" if modality else f"spare {_kind(layer)}"


@contextlib.contextmanager
def one_scene_update(viewer: napari.viewer.Viewer):
    """A context in which layers shown or hidden rebuild napari's scene graph once, at
    the end: napari rebuilds it (views, layer order, every layer's overlays, a draw
    update) on each visibility change, 10-15 ms with a dozen layers. Not napari's
    ``layers.batched_update``: that runs a full ``gc.collect()`` at its end. napari's
    canvas is private (``_pause_scene_graph``): without it, as before."""
    canvas = getattr(qt_viewer(viewer), "canvas", None)
    update = getattr(canvas, "_update_scenegraph", None)
    if update is None or getattr(canvas, "_pause_scene_graph", True):
        yield  # none, or already paused (napari's own batch updates it)
        return
    canvas._pause_scene_graph = True
    try:
        yield
    finally:
        canvas._pause_scene_graph = False
        update()


def _pairs(viewer: napari.viewer.Viewer) -> list[tuple]:
    """Parked (image, mask) pairs, oldest first (a half pair, its other layer deleted
    by the user, is not one)."""
    found: dict[int, dict[str, Any]] = {}
    for layer in spares(viewer):
        found.setdefault(layer.metadata.get("wsseg_pair"), {})[layer.metadata[SPARE_KEY]] = layer
    return [(p["image"], p["mask"]) for p in found.values() if len(p) == 2]


def take_spare(viewer: napari.viewer.Viewer, image: ImageData, mask: np.ndarray):
    """A parked (image, mask) pair that can show ``image`` and ``mask`` by a data update,
    or None. The image layer is taken out of the spares; the mask layer stays one
    until :func:`claim` (a case put on screen in steps shows it a step later)."""
    for image_layer, mask_layer in _pairs(viewer):
        if image_fits(image_layer, image) and mask_fits(mask_layer, mask):
            claim(image_layer)
            return image_layer, mask_layer
    return None


def claim(layer) -> None:
    """Take ``layer`` out of the spares (its metadata no longer marks it as one)."""
    marks = (SPARE_KEY, "wsseg_pair")
    idle(layer, False)
    layer.metadata = {k: v for k, v in layer.metadata.items() if k not in marks}


def idle(layer, parked: bool) -> None:
    """A parked layer skips napari's update of it at each canvas paint (the data level
    and corner pixels of the view: ``Layer._update_draw``, private), 0.8 ms a layer a
    paint that a hidden one-pixel layer does not need; one taken back gets it again,
    and the next paint computes both for its new data. Nothing without the method."""
    if not parked:
        vars(layer).pop("_update_draw", None)
    elif hasattr(type(layer), "_update_draw"):
        layer._update_draw = _no_update


def place_spares_steps(
    viewer: napari.viewer.Viewer,
    scale: tuple,
    translate: tuple,
    sliders: bool = True,
    per_step: int = 2,
) -> Iterator[None]:
    """Move the spares onto the case's first pixel (only those not already there),
    ``per_step`` layers a step (a move costs 5-8 ms: napari recomputes the layer's
    transforms and vispy its node's), a yield after each, none when no spare moves.
    ``sliders=False``: as in :func:`park`."""
    moves = []
    for layer in spares(viewer):
        where = _spare_placement(layer.ndim, scale, translate)
        if not (np.allclose(layer.scale, where[0]) and np.allclose(layer.translate, where[1])):
            moves.append((layer, where))
    for start in range(0, len(moves), per_step):
        chunk = moves[start : start + per_step]
        with batched(viewer, [layer for layer, _ in chunk], sliders=sliders):
            for layer, where in chunk:
                place(layer, *where)
        yield
