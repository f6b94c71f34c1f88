"""Putting a read case on screen: at once, or in steps the UI runs between.

The case's layers are reused, parked as spares or taken back (:mod:`._slots`); what
a case layer is and how its mask is shown is :mod:`._case`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_wsseg.widgets import _display, _slots
from napari_wsseg.widgets._case import case_layers, load_case, mask_slot, show_mask
from napari_wsseg.widgets._layerdata import case_metadata
from napari_wsseg.widgets._live import PARTIAL_KEY

if TYPE_CHECKING:
    import napari


def put_case(viewer: napari.viewer.Viewer, loaded: dict[str, Any]) -> None:
    """Show a case :func:`load_case` read (UI thread) in the case layers, all at once."""
    for _ in put_case_steps(viewer, loaded):
        pass


def put_case_steps(viewer: napari.viewer.Viewer, loaded: dict[str, Any]) -> Iterator[None]:
    """:func:`put_case` in steps: a caller that lets the UI run between them (the
    browser's double-click) keeps each stall short, since napari's event fan-out costs
    2-10 ms a layer property and a canvas paint 15-50 ms on a software GL (a stall is
    about a step and a paint). The image and mask layers are reused when they fit
    (:mod:`._slots`); a case of another kind takes a spare pair, in steps of its own:
    the last case's pixels, the rest of it parked, the spares moved (two a step), the
    spare image's pixels (drawn unseen), then the view fitted to them and shown, the
    spare mask shown, and the sliders recomputed. Then the mask's pixels, the layer
    order, the selection, and the colorbars, axis names and legend, each in a step of
    its own when it changes anything. Each step leaves a screen the docks can read
    (the last case's mask is hidden while the new image comes); the case-opened event
    comes with the last. A caller must run a started sequence to its end before
    starting another."""
    rec, image, latest = loaded["rec"], loaded["image"], loaded["latest"]
    meta = case_metadata(loaded["root"], rec.id, rec.modality, image)
    kw = image.layer_kwargs()
    kw["metadata"] = {**kw["metadata"], **meta, "wsseg_role": "image"}
    name = Path(rec.relpath).name
    # a streamed partial map carries no case key: it goes with the last case too
    old = case_layers(viewer) + [ly for ly in viewer.layers if PARTIAL_KEY in ly.metadata]
    keep = next((ly for ly in old if ly.metadata.get("wsseg_role") == "image"), None)
    keep = keep if keep is not None and _slots.image_fits(keep, image) else None
    slot = mask_slot(viewer)
    mask = loaded["mask"]
    if mask is None:
        mask = _slots.empty_mask(image, rec.modality)
    # a case of another kind gets another pair, mask included: keeping a Labels layer
    # while the image layer under it was replaced crashed vispy (glDrawArrays, Xvfb)
    fits = keep is not None and slot is not None and _slots.mask_fits(slot, mask)
    scale, translate = _slots.image_placement(image)  # the spares sit on its first pixel
    if not fits:
        # the pair on screen is parked as a spare (a fresh layer costs 0.1-0.25 s,
        # a removal a collection); a spare of the new kind comes back below
        shown = next((ly for ly in old if ly.metadata.get("wsseg_role") == "image"), None)
        if shown is not None and slot is not None:
            yield from _slots.park_steps(viewer, shown, slot, scale, translate, sliders=False)
            old = [ly for ly in old if ly is not shown and ly is not slot]
        keep = slot = None
    opacity = None if slot is None else slot.opacity
    if opacity:
        # never the last case's mask over this case's image; not hidden: a Labels layer
        # hidden for a paint, then shown with new data, crashed Mesa (glDrawArrays)
        slot.opacity = 0.0
    _slots.drop(viewer, [ly for ly in old if ly is not keep and ly is not slot])
    _slots.settle_heap()  # later drops then scan only the new case's objects
    _display.text_overlay(viewer).visible = False  # the last case's legend and warning go
    if not fits:
        yield  # the last case is off screen
        # the spares onto this case's first pixel, two a step
        yield from _slots.place_spares_steps(viewer, scale, translate, sliders=False)
        spare = _slots.take_spare(viewer, image, mask)
        keep, slot = spare if spare is not None else (None, None)
    if keep is not None and not fits:
        # the canvas is empty (the last case parked): the pixels first, drawn unseen,
        # then the view fitted to them and shown
        _slots.update_image(viewer, keep, image, name, kw["metadata"], sliders=False, opacity=0)
        yield
        keep.opacity = 1.0
    elif keep is not None:
        _slots.update_image(viewer, keep, image, name, kw["metadata"], sliders=fits)
    else:
        viewer.add_image(image.data, name=name, **kw)
    viewer.reset_view()  # the image's first paint is already fitted
    yield  # the image is on screen
    if slot is not None and not fits:
        _slots.claim(slot)
        # shown a step before its new pixels (its one pixel is label 0: nothing drawn):
        # showing a Labels layer costs a scene-graph update and a refresh of its own
        slot.visible = True
        yield
    source = _slots.PLACEHOLDER if loaded["mask"] is None else latest.source
    parent = None if loaded["mask"] is None else latest.id
    shown_mask = show_mask(
        viewer, mask, image, parent=parent, source=source, slot=slot, sliders=fits
    )
    if opacity:
        shown_mask.opacity = opacity
    yield  # the mask is on screen (under the image until ordered)
    if not fits:
        _slots.recompute_sliders(viewer)
        yield
    if _display.order_layers(viewer):
        yield
    if _display.select_visible(viewer):
        yield
    _display.refresh(viewer)  # colorbars, axis names, legend
    viewer.reset_view()
    _slots.case_opened(viewer)(value=rec.id)


def clear_case(viewer: napari.viewer.Viewer, scale: tuple, translate: tuple) -> None:
    """Take the case off screen: its image and mask are parked as spares (on the
    first pixel of what is shown instead: ``scale``, ``translate``), the rest goes."""
    old = case_layers(viewer) + [ly for ly in viewer.layers if PARTIAL_KEY in ly.metadata]
    shown = next((ly for ly in old if ly.metadata.get("wsseg_role") == "image"), None)
    slot = mask_slot(viewer)
    if shown is not None and slot is not None:
        _slots.park(viewer, shown, slot, scale, translate)
        old = [ly for ly in old if ly is not shown and ly is not slot]
    _slots.drop(viewer, old)
    _display.text_overlay(viewer).visible = False
    _display.order_layers(viewer)


def show_case(viewer: napari.viewer.Viewer, study, image_id: int) -> None:
    """Replace the viewer's case layers with image ``image_id`` and its latest mask."""
    put_case(viewer, load_case(study, image_id))
