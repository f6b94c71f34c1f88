"""Dermoscopy-like skin-lesion phantom: one melanoma, nevus or keratosis per image.

Skin is a beige background with pore/texture noise, uneven lighting and a few dark
hairs. The classes differ as in dermoscopy's ABCD cues:

- melanoma: larger, asymmetric, irregular border, several colours (dark brown,
  black, blue-grey veil, reddish areas);
- nevus: round/oval, regular border, uniform brown with a faint network;
- keratosis: light-to-mid brown, moderately irregular "stuck-on" border, waxy
  texture with bright milia-like dots and dark comedo-like openings.

Labels are one-hot over ("melanoma", "nevus", "keratosis"); mask = lesion (1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import PhantomCase, draw_polyline, irregular_blob, smooth_noise

CLASSES = ("melanoma", "nevus", "keratosis")
DEFAULT_SHAPE = (128, 128)


def _resolve(rng: np.random.Generator, label: Any) -> str:
    if label is None:
        return str(rng.choice(CLASSES))
    if isinstance(label, dict):
        on = [c for c in CLASSES if label.get(c)]
        if len(on) != 1 or set(label) - set(CLASSES):
            raise ValueError(f"skin label dict must set exactly one of {CLASSES}, got {label!r}")
        return on[0]
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return CLASSES[int(label)]
    if label not in CLASSES:
        raise ValueError(f"unknown skin lesion class {label!r}; expected one of {CLASSES}")
    return str(label)


def make_case(
    rng: np.random.Generator, label: Any = None, shape: tuple[int, int] = DEFAULT_SHAPE
) -> PhantomCase:
    """Generate one skin image (RGB uint8, (Y, X, 3)).

    ``label``: None (random), a class name, a class index or a one-hot dict.
    """
    cls = _resolve(rng, label)
    h, w = shape
    s = min(h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    tone = np.array([rng.uniform(200, 235), rng.uniform(160, 190), rng.uniform(135, 165)])
    light = 1.0 - 0.25 * (((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
    tex = 0.04 * smooth_noise(rng, shape, 1.0) + 0.05 * smooth_noise(rng, shape, s * 0.08)
    rgb = tone[None, None, :] * (light * (1 + tex))[..., None]

    size = {"melanoma": (0.18, 0.3), "nevus": (0.1, 0.2), "keratosis": (0.14, 0.26)}[cls]
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

    for _ in range(int(rng.integers(0, 5))):  # hairs
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
    rgb += rng.normal(0, 2.5, size=rgb.shape)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    mask = lesion.astype(np.uint8)
    labels = {k: int(k == cls) for k in CLASSES}
    return PhantomCase(
        image=image, mask=mask, labels=labels, meta={"spacing": (0.05, 0.05), "lesion_class": cls}
    )
