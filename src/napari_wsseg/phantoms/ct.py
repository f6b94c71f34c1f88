"""Abdominal CT phantom: a pancreas-like organ that may carry a small hypo-dense lesion.

The volume is int16 Hounsfield units, (Z, Y, X), spacing (2.5, 0.8, 0.8) mm by
default. Structures: air (-1000), a body ellipse of soft tissue (~40 HU) with a
subcutaneous fat ring and visceral fat (~-100 HU), spine (bone), aorta
(contrast-enhanced), liver, kidneys and an elongated curved pancreas (~45 HU)
surrounded partly by fat. A positive case (``{'pdac': 1}``) has an irregular
lesion 30-50 HU below the organ, 5-12 mm wide, fully inside the pancreas; the
mask marks its voxels with 1. Noise is ~12 HU (slightly correlated), so the lesion
is visible but not trivial. (PDAC is typically hypo-attenuating by a few tens of HU
against enhancing parenchyma; the earlier default, 10-20 HU, was an iso-attenuating
extreme that the sample study's few volumes could not teach a model.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import PhantomCase, irregular_blob, resolve_binary, smooth_noise

DEFAULT_SHAPE = (32, 96, 96)
DEFAULT_SPACING = (2.5, 0.8, 0.8)


def _pancreas(
    shape: tuple[int, int, int], spacing: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """A curved tube along X whose head is thicker; returns a boolean volume."""
    nz, ny, nx = shape
    n = 200
    t = np.linspace(0.0, 1.0, n)
    x = nx * (0.22 + 0.56 * t) + rng.uniform(-2, 2)
    y = ny * (0.46 + 0.06 * np.sin(np.pi * t + rng.uniform(-0.5, 0.5))) + rng.uniform(-3, 3)
    z = nz * (0.5 + rng.uniform(-0.05, 0.05) + 0.25 * (t - 0.5) * rng.choice([-1, 1]))
    line = np.zeros(shape, dtype=bool)
    idx = np.clip(np.round(np.stack([z, y, x])).astype(int).T, 0, np.array(shape) - 1)
    tmap = np.zeros(shape, dtype=np.float32)
    line[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    tmap[idx[:, 0], idx[:, 1], idx[:, 2]] = t
    dist, inds = ndi.distance_transform_edt(~line, sampling=spacing, return_indices=True)
    t_near = tmap[inds[0], inds[1], inds[2]]
    # head (t=0) ~ 11 mm radius, tail ~ 6 mm, with a bumpy outline
    radius = 11.0 - 5.0 * t_near
    radius *= 1.0 + 0.12 * smooth_noise(rng, shape, 3.0)
    return dist <= radius


def make_case(
    rng: np.random.Generator,
    label: Any = None,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    noise_hu: float = 12.0,
    contrast_hu: tuple[float, float] = (30.0, 50.0),
) -> PhantomCase:
    """Generate one CT case.

    ``label``: None (random), 0/1, ``'pdac'``/``'normal'`` or ``{'pdac': 0/1}``.
    ``contrast_hu`` is the range the lesion's drop below the organ is drawn from.
    """
    positive = resolve_binary(rng, label, "pdac")
    nz, ny, nx = shape
    zz, yy, xx = np.mgrid[:nz, :ny, :nx].astype(np.float32)
    cy, cx = ny * 0.5 + rng.uniform(-2, 2), nx * 0.5 + rng.uniform(-2, 2)
    ry, rx = ny * rng.uniform(0.40, 0.45), nx * rng.uniform(0.45, 0.49)
    ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    body = ell <= 1.0
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[body] = 40.0
    # subcutaneous fat ring and visceral fat
    vol[body & (ell > rng.uniform(0.72, 0.8))] = -100.0
    inner = body & (ell <= 0.7)
    visceral = inner & (smooth_noise(rng, shape, 2.5) > 0.6)
    vol[visceral] = -90.0
    # spine and aorta (posterior = high Y)
    sy, sx = cy + ry * 0.62, cx + rng.uniform(-2, 2)
    srad = ny * 0.085
    sd = np.sqrt((yy - sy) ** 2 + (xx - sx) ** 2)
    vol[sd <= srad] = 250.0
    vol[(sd <= srad) & (sd > srad - 1.5)] = 700.0
    ad = np.sqrt((yy - (sy - srad * 1.7)) ** 2 + (xx - (sx + srad * 0.9)) ** 2)
    vol[ad <= ny * 0.05] = 160.0
    # liver (image left = patient right, upper slices) and kidneys
    liver = ((yy - cy + ry * 0.2) / (ry * 0.55)) ** 2 + ((xx - cx + rx * 0.55) / (rx * 0.4)) ** 2
    vol[(liver <= 1.0) & (zz < nz * 0.7) & inner] = 60.0
    for side in (-1, 1):
        kd = ((yy - sy + srad * 0.3) / (ny * 0.09)) ** 2 + (
            (xx - sx - side * rx * 0.45) / (nx * 0.06)
        ) ** 2
        vol[(kd <= 1.0) & (zz > nz * 0.3)] = 150.0
    # pancreas with a partial fat shell
    organ = _pancreas(shape, spacing, rng) & inner
    shell = (
        ndi.binary_dilation(organ, iterations=2) & ~organ & (smooth_noise(rng, shape, 2.0) > -0.2)
    )
    vol[shell] = -80.0
    organ_hu = rng.uniform(42.0, 50.0)
    vol[organ] = organ_hu + 4.0 * smooth_noise(rng, shape, 1.5)[organ]

    mask = np.zeros(shape, dtype=np.uint8)
    lesion_info: dict[str, Any] = {}
    if positive:
        core = ndi.binary_erosion(organ, iterations=2)
        if not core.any():
            core = organ
        pts = np.argwhere(core)
        c = pts[rng.integers(len(pts))].astype(float)
        diam_mm = rng.uniform(5.0, 12.0)
        radii = (
            max(diam_mm / 2 / spacing[0], 0.8),
            diam_mm / 2 / spacing[1],
            diam_mm / 2 / spacing[2],
        )
        blob = irregular_blob(
            shape, tuple(c), radii, rng, roughness=0.3, angle=rng.uniform(0, np.pi)
        )
        lesion = blob & organ
        if not lesion.any():
            lesion[tuple(int(v) for v in c)] = True
        drop = rng.uniform(*contrast_hu)
        # soft edge: full drop inside, half drop on the first shell outside (partial volume)
        vol[lesion] -= drop
        rim = ndi.binary_dilation(lesion) & ~lesion & organ
        vol[rim] -= drop * 0.4
        mask[lesion] = 1
        lesion_info = {
            "lesion_center": [float(v) for v in c],
            "lesion_drop_hu": float(drop),
            "lesion_diameter_mm": float(diam_mm),
        }

    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0.3, 0.6, 0.6))
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    vol[body] += noise[body]
    vol[~body] += 0.2 * noise[~body]
    image = np.clip(np.round(vol), -1024, 3071).astype(np.int16)
    meta = {
        "spacing": tuple(float(s) for s in spacing),
        "organ_hu": float(organ_hu),
        "organ_voxels": int(organ.sum()),
        **lesion_info,
    }
    return PhantomCase(image=image, mask=mask, labels={"pdac": int(positive)}, meta=meta)
