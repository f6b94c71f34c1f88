"""Mammogram phantom: a 12-bit breast image with small malignant and/or benign masses.

Default size (2944, 1920) like a full-field digital mammogram at 0.07 mm; pass
``shape=(736, 480)`` (with spacing scaled) for fast experiments. The breast is a
half-ellipse against the chest wall on the side given by the laterality ('L':
left image edge, 'R': right edge), with fibroglandular texture made of
multi-scale smoothed noise, a skin-line fall-off and, in MLO views, the pectoral
muscle in the upper chest-wall corner. Malignant masses are irregular dense cores
with spicules; benign masses are round, smooth and a little less dense. Lesion
radius is 1-2 % of the image height (diameter ~4-8 % of the breast width) and its
density increment (1100-1600 of 4095) exceeds the parenchyma's texture range, so a
lesion is small but clearly denser than the tissue around it. Mask: 1 malignant,
2 benign.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import (
    PhantomCase,
    draw_polyline,
    irregular_blob,
    random_point_in,
    smooth_noise,
)

DEFAULT_SHAPE = (2944, 1920)
DEFAULT_SPACING = 0.07


def _resolve(rng: np.random.Generator, label: Any) -> dict[str, int]:
    if label is None:
        kind = rng.choice(["malignant", "benign", "normal", "both"], p=[0.35, 0.3, 0.3, 0.05])
        label = str(kind)
    if isinstance(label, dict):
        unknown = set(label) - {"malignant", "benign"}
        if unknown:
            raise ValueError(f"unknown mammogram labels {sorted(unknown)}")
        return {
            "malignant": int(bool(label.get("malignant", 0))),
            "benign": int(bool(label.get("benign", 0))),
        }
    if isinstance(label, str):
        table = {"malignant": (1, 0), "benign": (0, 1), "normal": (0, 0), "both": (1, 1)}
        if label not in table:
            raise ValueError(f"unknown mammogram label {label!r}; expected one of {sorted(table)}")
        m, b = table[label]
        return {"malignant": m, "benign": b}
    return {"malignant": int(bool(label)), "benign": 0}


def _lesion(rng: np.random.Generator, r: float, malignant: bool) -> tuple[np.ndarray, np.ndarray]:
    """A lesion patch: (density increment in [0, 1], boolean mask), square of side ~8r."""
    half = int(np.ceil(4 * r))
    shape = (2 * half + 1, 2 * half + 1)
    c = (float(half), float(half))
    if malignant:
        core = irregular_blob(
            shape,
            c,
            (r * rng.uniform(0.8, 1.2), r),
            rng,
            roughness=0.35,
            harmonics=7,
            angle=rng.uniform(0, np.pi),
        )
        spic = np.zeros(shape, dtype=np.float32)
        for a in rng.uniform(0, 2 * np.pi, rng.integers(8, 16)):
            length = r * rng.uniform(1.6, 3.2)
            pts = np.array([[c[0], c[1]], [c[0] + length * np.sin(a), c[1] + length * np.cos(a)]])
            draw_polyline(spic, pts, rng.uniform(0.4, 0.7), width=max(1, int(r / 8)))
        density = np.maximum(ndi.gaussian_filter(core.astype(np.float32), r * 0.12), spic)
        mask = core | (spic > 0)
    else:
        core = irregular_blob(
            shape,
            c,
            (r * rng.uniform(0.85, 1.15), r),
            rng,
            roughness=0.04,
            harmonics=3,
            angle=rng.uniform(0, np.pi),
        )
        density = ndi.gaussian_filter(core.astype(np.float32), max(r * 0.04, 0.5))
        mask = core
    return density, mask


def make_case(
    rng: np.random.Generator,
    label: Any = None,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    spacing: float | None = None,
    laterality: str | None = None,
    view: str | None = None,
    *,
    radius_range: tuple[float, float] = (0.01, 0.02),
) -> PhantomCase:
    """Generate one mammogram.

    ``label``: None (random), ``'malignant' | 'benign' | 'normal' | 'both'``, 0/1
    (malignant or normal) or ``{'malignant': 0/1, 'benign': 0/1}``. ``spacing``
    defaults to 0.07 mm scaled by 2944 / height. ``radius_range``: the size law, lesion
    radius uniform in this range of fractions of the image height (default 1-2 %, the
    sample study's; GLAM's benchmark widens it so that some masses outgrow a patch).
    """
    lo_r, hi_r = (float(v) for v in radius_range)
    if not 0 < lo_r <= hi_r <= 0.25:
        raise ValueError(f"radius_range must satisfy 0 < lo <= hi <= 0.25, got {radius_range}")
    labels = _resolve(rng, label)
    h, w = shape
    spacing = float(spacing) if spacing is not None else DEFAULT_SPACING * DEFAULT_SHAPE[0] / h
    laterality = laterality or str(rng.choice(["L", "R"]))
    view = view or str(rng.choice(["CC", "MLO"]))
    if laterality not in ("L", "R") or view not in ("CC", "MLO"):
        raise ValueError(
            f"laterality must be 'L'/'R' and view 'CC'/'MLO', got {laterality}/{view}"
        )

    # breast built with the chest wall at x = 0, flipped for 'R' at the end
    cy = h * (0.5 if view == "CC" else 0.45) + rng.uniform(-0.03, 0.03) * h
    ry, rx = h * rng.uniform(0.38, 0.44), w * rng.uniform(0.62, 0.8)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    ell = ((yy - cy) / ry) ** 2 + (xx / rx) ** 2
    breast = ell <= 1.0
    # tissue thickness falls off towards the skin line
    thickness = np.sqrt(np.clip(1.0 - ell, 0.0, 1.0))
    coarse = max(1, h // 256)
    gland_field = smooth_noise(rng, shape, h * 0.03, coarse) + 0.6 * smooth_noise(
        rng, shape, h * 0.008, coarse
    )
    # glandular tissue concentrated behind the nipple, fat near the skin
    gland_prior = np.exp(-(((yy - cy) / (ry * 0.7)) ** 2) - ((xx - rx * 0.35) / (rx * 0.5)) ** 2)
    density = np.clip(0.5 * gland_field + 1.6 * gland_prior - 0.7 + rng.uniform(-0.3, 0.3), 0, 1.2)
    img = 900.0 + 700.0 * thickness + 900.0 * density * thickness
    if view == "MLO":
        pect = (xx / (w * rng.uniform(0.25, 0.35)) + yy / (h * rng.uniform(0.35, 0.5))) <= 1.0
        img[pect] = np.maximum(img[pect], 2500.0 + 80.0 * gland_field[pect])
    fine = smooth_noise(rng, shape, max(1.0, h * 0.0012), 1)
    img += 60.0 * fine * thickness

    mask = np.zeros(shape, dtype=np.uint8)
    placed: list[dict[str, Any]] = []
    region = breast & (ell <= 0.75) & (xx > w * 0.05)
    for cls, value, count in (
        ("malignant", 1, labels["malignant"]),
        ("benign", 2, labels["benign"]),
    ):
        n = 0 if not count else (1 if rng.random() < 0.8 else 2)
        for _ in range(n):
            r = h * rng.uniform(lo_r, hi_r)
            dens, les = _lesion(rng, r, malignant=cls == "malignant")
            m = int(2 * r)
            for _ in range(100):  # away from other lesions (cheaper than an erosion)
                y, x = random_point_in(region, rng)
                if not mask[max(y - m, 0) : y + m, max(x - m, 0) : x + m].any():
                    break
            half = dens.shape[0] // 2
            y0, x0 = int(y) - half, int(x) - half
            ys = slice(max(y0, 0), min(y0 + dens.shape[0], h))
            xs = slice(max(x0, 0), min(x0 + dens.shape[1], w))
            ps = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            # clearly denser than the parenchyma (as a mass visible to a radiologist):
            # the increment exceeds the texture's range (900 * density * thickness),
            # so a mass is brighter than the tissue around it wherever it lies
            lo, hi = (1300.0, 1600.0) if cls == "malignant" else (1100.0, 1400.0)
            gain = rng.uniform(lo, hi)
            img[ys, xs] += gain * dens[ps] * (breast[ys, xs] > 0)
            sub = mask[ys, xs]
            sub[les[ps] & breast[ys, xs]] = value
            placed.append({"class": cls, "center": [int(y), int(x)], "radius_px": float(r)})

    img[~breast] = 40.0
    img += rng.normal(0.0, 25.0, size=shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 4095).astype(np.uint16)
    if laterality == "R":
        image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
        for p in placed:
            p["center"][1] = w - 1 - p["center"][1]
    meta = {
        "spacing": (spacing, spacing),
        "laterality": laterality,
        "view": view,
        "bits_stored": 12,
        "lesions": placed,
    }
    return PhantomCase(image=image, mask=mask, labels=labels, meta=meta)
