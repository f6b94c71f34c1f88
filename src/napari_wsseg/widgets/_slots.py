"""Case layers reused from one case to the next, so opening a case does not block the UI.

napari runs a full ``gc.collect()`` for every layer removed (``VispyCanvas._remove_layer``,
a Windows GL fix): 0.7 s a layer with torch and napari on the heap, and adding a
layer costs another 0.1-0.4 s. So a case change updates the image layer and the
mask's Labels layer in place (data, scale, translate, contrast, name, metadata)
when the new case fits them, and a case without a stored mask keeps an empty
Labels layer (a placeholder, source ``"none"``: :func:`is_placeholder`) that one
can paint on. A layer whose kind changes (ndim, RGB, multiscale, dtype) is never
mutated into the other kind (vispy keeps the old node type): a fresh one replaces
it. The layers that go (the last case's maps, boxes, predictions) go in one
``batched_update`` (one collection, not one per layer).

No dock holds another: they learn of a case change from :func:`case_opened`, as well
as from ``viewer.layers.events.inserted`` (no layer is inserted on a reuse).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.study.vocab import labels_for

if TYPE_CHECKING:
    import napari

    from napari_wsseg.io.base import ImageData

PLACEHOLDER = "none"  # wsseg_source of the empty mask a case without one gets
MAX_EMPTY_SIDE = 2048  # a slide's empty mask: the first pyramid level this small

_EMITTERS: dict[int, Any] = {}
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


def image_fits(layer, image: ImageData) -> bool:
    """Whether ``layer`` can show ``image`` by a data update (same kind of layer)."""
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.rgb != image.rgb:
        return False
    if layer.multiscale != image.multiscale or layer.ndim != image.ndim:
        return False
    first = image.data[0] if image.multiscale else image.data
    return np.dtype(layer.dtype) == np.dtype(first.dtype)


def one_refresh(layer):
    """A context in which ``layer`` does not re-slice; one refresh at the end (each
    setter of a case change would otherwise slice and upload the data again)."""
    block = getattr(layer, "_block_refresh", None)  # napari >= 0.5
    if block is None:
        return contextlib.nullcontext()
    return _refreshed(layer, block)


@contextlib.contextmanager
def _refreshed(layer, block):
    with block():
        yield
    layer.refresh()


def place(layer, scale: tuple, translate: tuple) -> None:
    """Set scale and translate, each only when it changes (each set re-fits the dims)."""
    if not np.allclose(layer.scale, scale):
        layer.scale = scale
    if not np.allclose(layer.translate, translate):
        layer.translate = translate


def update_image(layer, image: ImageData, name: str, metadata: dict) -> None:
    """Show ``image`` in ``layer`` as a fresh ``add_image`` would (display settings the
    user changed on the last case are reset)."""
    nd = image.ndim
    with one_refresh(layer):
        layer.metadata = metadata
        layer.data = image.data
        place(
            layer,
            tuple(image.scale) if image.scale else (1.0,) * nd,
            tuple(image.translate) if image.translate else (0.0,) * nd,
        )
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
        if layer.opacity != 1.0:
            layer.opacity = 1.0
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


def update_labels(layer, data: np.ndarray, scale: tuple, translate: tuple) -> None:
    """New pixels and placement for a reused Labels layer; its undo history goes
    (an undo must not paint the last case's strokes into this one)."""
    with one_refresh(layer):
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
