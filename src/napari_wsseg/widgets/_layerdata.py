"""Turn a method's :class:`Maps` into napari LayerData tuples (no Qt, testable headless).

A map's pixels are placed on the image with the image's physical scale/translate
times the map's :class:`Grid`, so slides' low-resolution tile maps and GLAM's
coarse maps line up with the pixels they describe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods.base import Maps

# Colormaps by map family (low end made transparent, :func:`_fading`); anything
# else gets 'inferno'.
_COLORMAPS = {
    "attention": "magma",
    "gradcam": "turbo",
    "glam_global": "inferno",
    "glam_local": "inferno",
    "glam_combined": "inferno",
    "instance_prob": "viridis",
    "mask_prob": "green",
    "local": "plasma",
}

MAP_KEY = "wsseg_map"


def placement(image: ImageData, grid_scale: tuple, grid_translate: tuple) -> tuple[tuple, tuple]:
    """Physical scale/translate of a map given in the image's pixel grid."""
    nd = len(grid_scale)
    img_scale = tuple(image.scale[-nd:]) if image.scale else (1.0,) * nd
    img_tr = tuple(image.translate[-nd:]) if image.translate else (0.0,) * nd
    scale = tuple(float(s) * g for s, g in zip(img_scale, grid_scale))
    translate = tuple(t + g * s for t, g, s in zip(img_tr, grid_translate, img_scale))
    return scale, translate


# Maps whose values are probabilities (0.5 means something); the others are relative
# saliency (attention, Grad-CAM, GLAM), whose level differs from model to model.
PROBABILITY_MAPS = {"mask_prob", "instance_prob"}
# The bottom of each map's colormap is drawn fully transparent: over a bright image
# (a chest film, a skin photo, a slide) the low values leave the pixels untouched.
CUT = 0.25


def _fading(name: str):
    """Colormap ``name`` transparent below :data:`CUT` of its range, then rising to
    opaque: only the high part of a map is drawn, whatever the image under it."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    x = np.linspace(0.0, 1.0, 64)
    colors = np.array(ensure_colormap(name).map(x), dtype=float)
    colors[:, 3] = np.clip((x - CUT) / (1.0 - CUT), 0.0, 1.0) ** 0.5
    return Colormap(colors, name=f"{name} (fading)")


def background_level(arr: np.ndarray) -> float:
    """A saliency map's background: the median of its values above its minimum (the
    minimum itself is often the area outside the body, a breast's or a volume's)."""
    arr = np.asarray(arr, dtype=np.float64)
    lo = np.nanmin(arr)
    above = arr[arr > lo]
    return float(np.nanmedian(above)) if above.size else float(lo)


def map_limits(name: str, arr: np.ndarray) -> tuple[float, float]:
    """Contrast limits of a map layer.

    Probabilities get (0, 1), so the colour says the probability (a map spanning
    under a tenth of that, an untrained model's, is stretched to its own range so it
    stays visible). Saliency maps are relative: they get (background, max), the
    background being :func:`background_level`, so a map's usual level (Grad-CAM at
    0.54-0.63 outside the findings, attention >= 0.49 everywhere, GLAM's global map
    over most of a breast) is transparent and only what stands out from it is drawn.
    """
    arr = np.asarray(arr)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if name in PROBABILITY_MAPS:
        if hi - lo < 0.1 and hi > lo:
            return (lo, hi)
        return (0.0, 1.0)
    mid = background_level(arr)
    if hi > mid:
        return (mid, hi)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def map_layers(maps: Maps, image: ImageData, method: str, source: str) -> list[tuple]:
    """One Image LayerData tuple per map; class-axis maps get a leading slider axis."""
    out = []
    nd = image.ndim
    # One map is shown at first (the method's first non-mask map): additive maps on
    # top of each other would sum into noise; the others are a click away.
    first = next((n for n in maps.maps if n != maps.mask), maps.mask)
    for name, arr in maps.maps.items():
        arr = np.asarray(arr, dtype=np.float32)
        grid = maps.grid(name, nd)
        scale, translate = placement(image, grid.scale, grid.translate)
        extra = arr.ndim - nd
        if extra > 0:
            scale = (1.0,) * extra + scale
            translate = (0.0,) * extra + translate
        kwargs: dict[str, Any] = {
            "name": f"{name} [{method}]",
            "scale": scale,
            "translate": translate,
            "colormap": _fading(_COLORMAPS.get(name, "inferno")),
            # translucent, not additive: additive maps washed bright images (chest
            # films, skin photos) out to yellow or white
            "blending": "translucent",
            "opacity": 0.7,
            "visible": name == first,
            "contrast_limits": map_limits(name, arr),
            "metadata": {
                MAP_KEY: name,
                "wsseg_source": source,
                "wsseg_method": method,
                "classes": maps.classes.get(name, []),
            },
        }
        out.append((arr, kwargs, "image"))
    return out


def box_layer(maps: Maps, image: ImageData, method: str, source: str) -> tuple | None:
    """GLAM-style patch boxes as a Shapes LayerData tuple of rectangles (or None)."""
    if maps.boxes is None or len(maps.boxes) == 0:
        return None
    scale, translate = placement(image, (1.0, 1.0), (0.0, 0.0))
    rects = [
        np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
        for y0, x0, y1, x1 in np.asarray(maps.boxes, dtype=float)
    ]
    kwargs = {
        "name": f"patches [{method}]",
        "shape_type": "rectangle",
        "edge_color": "cyan",
        "face_color": "transparent",
        "edge_width": max(2.0, 0.002 * max(image.spatial_shape)),
        "scale": scale,
        "translate": translate,
        "text": {"string": list(maps.box_labels) or ["patch"] * len(rects), "color": "cyan"}
        if maps.box_labels
        else None,
        "metadata": {MAP_KEY: "boxes", "wsseg_source": source, "wsseg_method": method},
    }
    if kwargs["text"] is None:
        del kwargs["text"]
    return (rects, kwargs, "shapes")


def threshold_mask(
    prob: np.ndarray, threshold: float, classes: list[str] | None = None, stack: bool = False
) -> np.ndarray:
    """Mask from a probability map, in the study's mask format.

    A (C, ...) map becomes a label image (the most probable class where its
    probability passes the threshold, label = class index + 1), or with ``stack``
    (multi-label X-ray findings) one binary channel per class, valued index + 1 so
    each class keeps its colour in napari.
    """
    prob = np.asarray(prob)
    if classes and prob.ndim >= 3 and prob.shape[0] == len(classes):
        if stack:
            labels = np.arange(1, len(classes) + 1, dtype=np.uint8).reshape(
                -1, *[1] * (prob.ndim - 1)
            )
            return np.where(prob >= threshold, labels, 0).astype(np.uint8)
        best = prob.argmax(axis=0)
        hit = prob.max(axis=0) >= threshold
        return np.where(hit, best + 1, 0).astype(np.uint8)
    return (prob >= threshold).astype(np.uint8)


def mask_to_layer(mask: np.ndarray, modality: str) -> np.ndarray:
    """Stored mask -> Labels data (X-ray stacks: channel c valued c + 1)."""
    mask = np.asarray(mask)
    if modality == "xray" and mask.ndim == 3:
        labels = np.arange(1, mask.shape[0] + 1, dtype=np.uint8)[:, None, None]
        return np.where(mask > 0, labels, 0).astype(np.uint8)
    return mask.astype(np.uint8)


def layer_to_mask(data: np.ndarray, modality: str) -> np.ndarray:
    """Labels data -> the study's stored mask format."""
    data = np.asarray(data)
    if modality == "xray" and data.ndim == 3:
        return (data > 0).astype(np.uint8)
    return data.astype(np.uint8)


CASE_KEY = "wsseg_case"


def case_metadata(study_root: str, image_id: int, modality: str, image: ImageData) -> dict:
    """What every layer of an opened case carries, so each dock finds study and image."""
    return {
        CASE_KEY: {"study": str(study_root), "image_id": int(image_id), "modality": modality},
        "wsseg_image": image,
    }
