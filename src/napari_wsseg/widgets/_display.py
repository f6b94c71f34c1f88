"""How a case's layers read: fixed order, colorbars, named axes, a legend, selection.

Headless (napari models only, no Qt), called after a case opens and after Explain
adds its overlays, so every case looks the same: image at the bottom, maps above
it, patch boxes, then the mask (stored or predicted) on top; the visible layer on
top is the selected one (the layer controls edit what one sees); each map has a
colorbar and a line in the legend naming it and its range; slider axes are named,
a class axis by the class on screen ("finding: edema", "class: benign").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets._layerdata import CASE_KEY, CUT, MAP_KEY
from napari_wsseg.widgets._slots import SPARE_KEY

if TYPE_CHECKING:
    import napari

# a prediction shown beside a stored mask sits on top (issue 13: image, maps, stored
# mask, prediction); selection still goes to the stored mask, the one the user edits
ROLE_ORDER = {"image": 0, "map": 1, "boxes": 2, "mask": 3, "prediction": 4}
SPATIAL = ("z", "y", "x")


def role(layer) -> str | None:
    """image, map, boxes or mask for a case layer; None for any other layer."""
    name = layer.metadata.get(MAP_KEY)
    if name is not None:
        return "boxes" if name == "boxes" else "map"
    if CASE_KEY in layer.metadata:
        return layer.metadata.get("wsseg_role")
    return None


def order_layers(viewer: napari.viewer.Viewer) -> bool:
    """Spares (hidden), image, maps, boxes, mask, bottom to top; other layers stay
    above them. True when it moved a layer."""
    layers = list(viewer.layers)
    spare = [ly for ly in layers if SPARE_KEY in ly.metadata]
    case = [ly for ly in layers if role(ly) in ROLE_ORDER]
    want = spare + sorted(case, key=lambda ly: ROLE_ORDER[role(ly)])  # stable sort
    want += [ly for ly in layers if ly not in case and ly not in spare]
    if want == layers:
        return False
    # one reorder event at the end (what move_multiple does; it fails on a full
    # permutation in napari 0.9): napari rebuilds the scene graph once per event
    events = viewer.layers.events
    with events.reordered.blocker():
        for i, layer in enumerate(want):
            j = viewer.layers.index(layer)
            if j != i:
                viewer.layers.move(j, i)
    events.reordered(value=viewer.layers)
    return True


def select_visible(viewer: napari.viewer.Viewer) -> bool:
    """Select the top visible case layer (never a hidden probability map); True when
    the selection changed."""
    for layer in reversed(list(viewer.layers)):
        if role(layer) in ("mask", "map", "image") and layer.visible:
            selection = viewer.layers.selection
            if selection.active is layer and len(selection) == 1:
                return False
            selection.active = layer
            return True
    return False


def case_image(viewer: napari.viewer.Viewer):
    """The ImageData of the case on screen (None without a case)."""
    return next((ly.metadata["wsseg_image"] for ly in viewer.layers if role(ly) == "image"), None)


def class_axis(viewer: napari.viewer.Viewer) -> tuple[str, list[str]] | None:
    """The name and classes of the case's leading class axis (X-ray findings, GLAM's
    malignant/benign maps), or None when no layer has one."""
    image = case_image(viewer)
    if image is None:
        return None
    for layer in viewer.layers:
        meta = layer.metadata
        if CASE_KEY not in meta or layer.ndim <= image.ndim:
            continue
        modality = meta[CASE_KEY].get("modality")
        classes = list(meta.get("classes") or meta.get("wsseg_classes") or [])
        if not classes and modality == "xray":
            classes = list(labels_for("xray"))
        if len(classes) == layer.data.shape[0]:
            return ("finding" if modality == "xray" else "class"), classes
    return None


def axis_labels(viewer: napari.viewer.Viewer) -> tuple[str, ...] | None:
    """Slider axis names for the case on screen: z/y/x, and a leading class axis named
    by its class at the current step."""
    image = case_image(viewer)
    if image is None:
        return None
    nd = viewer.dims.ndim
    spatial = SPATIAL[-image.ndim :]
    extra = nd - len(spatial)
    if extra < 0:
        return None
    labels = [f"axis {i}" for i in range(extra)] + list(spatial)
    axis = class_axis(viewer)
    if extra >= 1 and axis is not None:
        name, classes = axis
        step = int(viewer.dims.current_step[0])
        labels[0] = f"{name}: {classes[step]}" if 0 <= step < len(classes) else name
    return tuple(labels)


def name_axes(viewer: napari.viewer.Viewer) -> None:
    """Set ``viewer.dims.axis_labels`` (call on each slider move and layer change)."""
    labels = axis_labels(viewer)
    if labels is not None and tuple(viewer.dims.axis_labels) != labels:
        viewer.dims.axis_labels = labels


def show_colorbars(viewer: napari.viewer.Viewer) -> None:
    """A colorbar for each visible map layer (hidden maps draw none); showing or
    hiding a map later updates its colorbar and the legend."""
    for layer in viewer.layers:
        if role(layer) != "map":
            continue
        layer.colorbar.visible = bool(layer.visible)
        if not layer.metadata.get("wsseg_styled"):
            layer.metadata["wsseg_styled"] = True
            layer.events.visible.connect(lambda _e, v=viewer: refresh(v))


def refresh(viewer: napari.viewer.Viewer) -> None:
    """Colorbars, axis names and legend again (a map shown or hidden, a slider moved)."""
    show_colorbars(viewer)
    name_axes(viewer)
    show_legend(viewer)


def warning_of(viewer: napari.viewer.Viewer) -> str:
    """The case's warning (out of distribution), kept on its image layer."""
    for layer in viewer.layers:
        if role(layer) == "image":
            return str(layer.metadata.get("wsseg_warning") or "")
    return ""


def legend(viewer: napari.viewer.Viewer) -> str:
    """One line per visible map: its name, the value below which nothing is drawn and
    the one drawn in full colour; the case's warning comes first."""
    note = warning_of(viewer)
    lines = [f"⚠ {note}"] if note else []
    axis = axis_labels(viewer)
    if axis and ":" in axis[0]:
        lines.append(axis[0])  # the class the multi-class maps show
    for layer in viewer.layers:
        if role(layer) != "map" or not layer.visible:
            continue
        lo, hi = layer.contrast_limits
        clear = lo + CUT * (hi - lo)
        lines.append(f"{layer.name}: clear below {clear:.2f}, full at {hi:.2f}")
    return "\n".join(lines)


def show_legend(viewer: napari.viewer.Viewer) -> None:
    """The legend as the canvas's text overlay (bottom left), hidden when empty."""
    text = legend(viewer)
    overlay = text_overlay(viewer)
    overlay.visible = bool(text)
    overlay.position = "bottom_left"
    overlay.font_size = 10
    overlay.color = "white"
    overlay.text = text
    # napari places a bottom-anchored text by the height it had when last placed; a
    # second line added later hung below the canvas edge (the X-ray legend): re-place it
    overlay.events.position.emit(overlay.position)


def text_overlay(viewer: napari.viewer.Viewer):
    """The canvas text overlay (``viewer.text_overlay`` is deprecated in napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and "text" in canvas.overlays:
        return canvas.overlays["text"]
    return viewer.text_overlay


def style_case(viewer: napari.viewer.Viewer) -> None:
    """Order, select, colorbars, axis names and legend, in that order."""
    order_layers(viewer)
    select_visible(viewer)
    refresh(viewer)
