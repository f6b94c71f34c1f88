"""Dermoscopy-like skin-lesion phantom: one melanoma, nevus or keratosis per image.

Skin is a beige background with pore/texture noise, uneven lighting and a few dark
hairs. The classes differ as in dermoscopy's ABCD cues:

- melanoma: larger, asymmetric, irregular border, several colours (dark brown,
  black, blue-grey veil, reddish areas);
- nevus: round/oval, regular border, uniform brown with a faint network;
- keratosis: light-to-mid brown, moderately irregular "stuck-on" border, waxy
  texture with bright milia-like dots and dark comedo-like openings.

Labels are one-hot over ("melanoma", "nevus", "keratosis"); mask = lesion (1).

Variations for method benchmarks (keyword parameters of :func:`make_case`; the
defaults give the sample study's images, bit for bit):

- ``size_law='shared'``: one radius law for every class (no size cue);
- ``subregion=f``: a class-neutral lesion whose class shows only in a patch covering
  about a fraction ``f`` of it (colour and dot texture by class), so a classifier
  needs only that patch while the mask is the whole lesion;
- ``n_classes``: more classes than the three (names ``class_3``, ...), with ``subregion``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import PhantomCase, draw_polyline, irregular_blob, smooth_noise

CLASSES = ("melanoma", "nevus", "keratosis")
DEFAULT_SHAPE = (128, 128)
SHARED_SIZE = (0.12, 0.26)  # lesion radius / image side when size_law='shared'


def class_names(n_classes: int = 3) -> tuple[str, ...]:
    """The three dermoscopy classes, then ``class_3``, ``class_4``, ... when more are asked."""
    if n_classes < 2:
        raise ValueError(f"skin phantoms need n_classes >= 2, got {n_classes}")
    return (CLASSES + tuple(f"class_{i}" for i in range(3, n_classes)))[:n_classes]


def _resolve(rng: np.random.Generator, label: Any, names: tuple[str, ...] = CLASSES) -> str:
    if label is None:
        return str(rng.choice(names))
    if isinstance(label, dict):
        on = [c for c in names if label.get(c)]
        if len(on) != 1 or set(label) - set(names):
            raise ValueError(f"skin label dict must set exactly one of {names}, got {label!r}")
        return on[0]
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return names[int(label)]
    if label not in names:
        raise ValueError(f"unknown skin lesion class {label!r}; expected one of {names}")
    return str(label)


def make_case(
    rng: np.random.Generator,
    label: Any = None,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    *,
    size_law: str = "by_class",
    subregion: float | None = None,
    n_classes: int = 3,
) -> PhantomCase:
    """Generate one skin image (RGB uint8, (Y, X, 3)).

    ``label``: None (random), a class name, a class index or a one-hot dict.
    ``size_law``: ``'by_class'`` (melanoma largest, nevus smallest) or ``'shared'``
    (radius 12-26 % of the side for all). ``subregion``: None, or the fraction of the
    lesion that carries the class (see the module docstring). ``n_classes`` > 3 needs
    ``subregion``.
    """
    if size_law not in ("by_class", "shared"):
        raise ValueError(f"size_law must be 'by_class' or 'shared', got {size_law!r}")
    if subregion is not None or n_classes != 3:
        if subregion is None or not 0.0 < float(subregion) < 1.0:
            raise ValueError(
                f"subregion must lie in (0, 1) (and is needed for n_classes != 3), got {subregion}"
            )
        names = class_names(n_classes)
        return _subregion_case(rng, _resolve(rng, label, names), names, shape, float(subregion))
    cls = _resolve(rng, label)
    h, w = shape
    s = min(h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    tone = np.array([rng.uniform(200, 235), rng.uniform(160, 190), rng.uniform(135, 165)])
    light = 1.0 - 0.25 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
    tex = 0.04 * smooth_noise(rng, shape, 1.0) + 0.05 * smooth_noise(rng, shape, s * 0.08)
    rgb = tone[None, None, :] * (light * (1 + tex))[..., None]

    size = {"melanoma": (0.18, 0.3), "nevus": (0.1, 0.2), "keratosis": (0.14, 0.26)}[cls]
    if size_law == "shared":
        size = SHARED_SIZE
    r = s * rng.uniform(*size)
    c = (rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2))
    rough = {"melanoma": 0.35, "nevus": 0.04, "keratosis": 0.15}[cls]
    aspect = {
        "melanoma": rng.uniform(0.7, 1.3),
        "nevus": rng.uniform(0.85, 1.15),
        "keratosis": rng.uniform(0.75, 1.25),
    }[cls]
    lesion = irregular_blob(
        shape,
        c,
        (r * aspect, r),
        rng,
        roughness=rough,
        harmonics=8 if cls == "melanoma" else 4,
        angle=rng.uniform(0, np.pi),
    )
    soft = ndi.gaussian_filter(lesion.astype(np.float32), 1.5 if cls == "melanoma" else 1.0)
    d = np.sqrt((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / r

    if cls == "nevus":
        brown = np.array([rng.uniform(110, 150), rng.uniform(70, 95), rng.uniform(45, 65)])
        net = 0.06 * np.sin(xx * 1.3) * np.sin(yy * 1.3)
        col = brown[None, None, :] * (1 + net + 0.03 * smooth_noise(rng, shape, 2.0))[..., None]
    elif cls == "melanoma":
        dark = np.array([rng.uniform(45, 80), rng.uniform(25, 45), rng.uniform(20, 35)])
        mid = np.array([rng.uniform(110, 140), rng.uniform(60, 80), rng.uniform(40, 55)])
        veil = np.array([105.0, 115.0, 140.0])
        red = np.array([170.0, 80.0, 80.0])
        f1, f2, f3 = (smooth_noise(rng, shape, s * 0.04) for _ in range(3))
        col = np.where((f1 > 0)[..., None], dark, mid).astype(np.float32)
        col = np.where(((f2 > 0.6) & (d < 0.8))[..., None], veil, col)
        col = np.where((f3 > 1.0)[..., None], red, col)
        col *= (1 + 0.08 * smooth_noise(rng, shape, 1.0))[..., None]
    else:
        base = np.array([rng.uniform(140, 175), rng.uniform(100, 125), rng.uniform(70, 90)])
        waxy = 0.12 * smooth_noise(rng, shape, 1.2)
        col = base[None, None, :] * (1 + waxy)[..., None]
        pts = rng.random(shape)
        milia = ndi.binary_dilation(pts > 0.994) & lesion
        comedo = ndi.binary_dilation(pts < 0.005) & lesion
        col[milia] = [225.0, 215.0, 190.0]
        col[comedo] = [60.0, 45.0, 35.0]
    rgb = rgb * (1 - soft[..., None]) + col * soft[..., None]

    _hairs(rng, rgb, shape)
    rgb += rng.normal(0, 2.5, size=rgb.shape)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    mask = lesion.astype(np.uint8)
    labels = {k: int(k == cls) for k in CLASSES}
    return PhantomCase(
        image=image, mask=mask, labels=labels, meta={"spacing": (0.05, 0.05), "lesion_class": cls}
    )


def _hairs(rng: np.random.Generator, rgb: np.ndarray, shape: tuple[int, int]) -> None:
    """0-4 dark hairs drawn into ``rgb`` in place."""
    h, w = shape
    s = min(h, w)
    for _ in range(int(rng.integers(0, 5))):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        a, length = rng.uniform(0, 2 * np.pi), s * rng.uniform(0.3, 0.8)
        bend = rng.uniform(-0.3, 0.3)
        t = np.linspace(0, 1, 8)
        pts = np.stack(
            [y0 + length * t * np.sin(a + bend * t), x0 + length * t * np.cos(a + bend * t)], 1
        )
        hair = np.zeros(shape, dtype=np.float32)
        hm = draw_polyline(hair, pts, 1.0)
        rgb[hm] = rgb[hm] * 0.3 + np.array([40.0, 30.0, 25.0]) * 0.7


def _class_colour(index: int, n: int) -> np.ndarray:
    """A dark, distinct RGB colour per class: hues evenly spaced on the colour wheel."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(index / n, 0.6, 0.55)
    return np.array([r, g, b]) * 255.0


def _subregion_case(
    rng: np.random.Generator,
    cls: str,
    names: tuple[str, ...],
    shape: tuple[int, int],
    frac: float,
) -> PhantomCase:
    """A class-neutral brown lesion (shared size, border and texture laws) with one
    patch of about ``frac`` of its area in the class's colour and dot density."""
    h, w = shape
    s = min(h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    tone = np.array([rng.uniform(200, 235), rng.uniform(160, 190), rng.uniform(135, 165)])
    light = 1.0 - 0.25 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
    tex = 0.04 * smooth_noise(rng, shape, 1.0) + 0.05 * smooth_noise(rng, shape, s * 0.08)
    rgb = tone[None, None, :] * (light * (1 + tex))[..., None]
    r = s * rng.uniform(*SHARED_SIZE)
    c = (rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2))
    aspect = rng.uniform(0.75, 1.25)
    lesion = irregular_blob(
        shape, c, (r * aspect, r), rng, roughness=0.15, angle=rng.uniform(0, np.pi)
    )
    soft = ndi.gaussian_filter(lesion.astype(np.float32), 1.0)
    brown = np.array([rng.uniform(115, 150), rng.uniform(72, 95), rng.uniform(48, 65)])
    col = brown[None, None, :] * (1 + 0.08 * smooth_noise(rng, shape, 1.5))[..., None]
    # The discriminative patch: a blob of radius sqrt(frac) r inside the lesion.
    rp = r * np.sqrt(frac)
    ys, xs = np.nonzero(ndi.binary_erosion(lesion, iterations=max(1, int(rp * 0.6))))
    if len(ys) == 0:
        ys, xs = np.nonzero(lesion)
    i = rng.integers(len(ys))
    patch = irregular_blob(shape, (ys[i], xs[i]), (rp, rp), rng, roughness=0.1) & lesion
    k = names.index(cls)
    dots = (rng.random(shape) < 0.02 + 0.08 * k / max(1, len(names) - 1)) & patch
    col = np.where(patch[..., None], _class_colour(k, len(names)), col)
    col[ndi.binary_dilation(dots) & patch] = [235.0, 225.0, 200.0]
    rgb = rgb * (1 - soft[..., None]) + col * soft[..., None]
    _hairs(rng, rgb, shape)
    rgb += rng.normal(0, 2.5, size=rgb.shape)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    labels = {n: int(n == cls) for n in names}
    meta = {"spacing": (0.05, 0.05), "lesion_class": cls,
            "subregion_fraction": float(patch.sum() / max(1, lesion.sum()))}  # fmt: skip
    return PhantomCase(image=image, mask=lesion.astype(np.uint8), labels=labels, meta=meta)
