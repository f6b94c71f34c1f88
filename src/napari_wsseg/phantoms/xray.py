"""Chest X-ray phantom (PA view) with the 10 CheXseg findings, each region-specific.

Pixel values are attenuation (bone and fluid bright, air dark), 12-bit in a uint16
array. Anatomy: two lungs with vessel markings radiating from the hila, a
mediastinum, heart, diaphragm, ribs and clavicles. Findings (mask channel =
where the finding is):

- cardiomegaly: the heart is enlarged (cardiothoracic ratio > 0.55); mask = heart
- enlarged_cardiomediastinum: widened upper mediastinum; mask = the mediastinum
- pleural_effusion: basal opacity with a lateral meniscus; mask = the fluid
- pneumothorax: apico-lateral lucency without markings with a pleural line
- support_devices: bright tube/line (ET tube, central line); mask = the device
- lung_lesion: small round nodule
- edema: bilateral perihilar (bat-wing) haze
- consolidation: dense homogeneous lobar patch with air bronchograms
- airspace_opacity: fainter, patchy multifocal opacities
- atelectasis: linear (plate-like) band in a lower zone

Labels: each finding present with p=0.3 (15 % of images are normal); both are
parameters of ``make_case`` (``prevalence`` per finding, ``normal_fraction``). Mask:
(10, Y, X) uint8 in ``CHEST_FINDINGS`` order.
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
from napari_wsseg.study.vocab import CHEST_FINDINGS

DEFAULT_SHAPE = (256, 256)


def _prevalences(prevalence: float | dict[str, float]) -> dict[str, float]:
    """Per-finding probability of a random label; a dict may name only some findings."""
    if isinstance(prevalence, dict):
        unknown = set(prevalence) - set(CHEST_FINDINGS)
        if unknown:
            raise ValueError(f"prevalence names unknown findings {sorted(unknown)}")
        out = {f: float(prevalence.get(f, 0.3)) for f in CHEST_FINDINGS}
    else:
        out = dict.fromkeys(CHEST_FINDINGS, float(prevalence))
    if not all(0.0 <= p <= 1.0 for p in out.values()):
        raise ValueError(f"prevalences must lie in [0, 1], got {prevalence}")
    return out


def _resolve(
    rng: np.random.Generator,
    label: Any,
    prevalence: float | dict[str, float] = 0.3,
    normal_fraction: float = 0.15,
) -> dict[str, int]:
    if label is None:
        prev = _prevalences(prevalence)
        if rng.random() < normal_fraction:
            return dict.fromkeys(CHEST_FINDINGS, 0)
        return {f: int(rng.random() < prev[f]) for f in CHEST_FINDINGS}
    if isinstance(label, str):
        label = [] if label == "normal" else [label]
    if isinstance(label, dict):
        names = set(label)
        out = {f: int(bool(label.get(f, 0))) for f in CHEST_FINDINGS}
    else:
        names = set(label)
        out = {f: int(f in names) for f in CHEST_FINDINGS}
    unknown = names - set(CHEST_FINDINGS)
    if unknown:
        raise ValueError(f"unknown chest findings {sorted(unknown)}; expected {CHEST_FINDINGS}")
    return out


def _ellipse(
    ya: np.ndarray, xa: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> np.ndarray:
    """``ellipse_mask`` on given (anatomical-frame) coordinate arrays."""
    y, x = ya - cy, xa - cx
    ca, sa = np.cos(angle), np.sin(angle)
    return ((ca * y + sa * x) / ry) ** 2 + ((-sa * y + ca * x) / rx) ** 2 <= 1.0


def _blob(
    ya: np.ndarray,
    xa: np.ndarray,
    center: tuple[float, float],
    radii: tuple[float, float],
    rng: np.random.Generator,
    roughness: float,
    harmonics: int = 5,
) -> np.ndarray:
    """``irregular_blob`` (2D) on given (anatomical-frame) coordinate arrays."""
    y, x = ya - center[0], xa - center[1]
    r = np.sqrt((y / radii[0]) ** 2 + (x / radii[1]) ** 2)
    theta = np.arctan2(y / radii[0], x / radii[1])
    pert = np.ones_like(r)
    for k in range(2, 2 + harmonics):
        amp = roughness * rng.uniform(0.2, 1.0) / (k - 1) ** 0.7
        pert += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= np.clip(pert, 0.4, None)


class _Placement:
    """Where the patient's thorax lies in the image (patient positioning, habitus and
    inspiration): a shift, a scale (vertical scale includes the inspiration depth) and a
    small in-plane rotation about the image centre.

    Anatomy is described in a reference frame of "anatomical pixels" (the old fixed
    layout: (ya, xa) in [0, h) x [0, w)); ``to_image`` maps reference points to image
    pixels and ``ya``/``xa`` hold the reference coordinates of every image pixel, so
    regions drawn on ``ya``/``xa`` and lines drawn through ``to_image`` agree exactly.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]) -> None:
        h, w = shape
        self.h, self.w = h, w
        self.oy = h * (0.5 + rng.uniform(-0.05, 0.05))
        self.ox = w * (0.5 + rng.uniform(-0.05, 0.05))
        scale = rng.uniform(0.9, 1.08)  # habitus / magnification
        self.sy = scale * rng.uniform(0.95, 1.05)  # depth of inspiration
        self.sx = scale
        rot = rng.uniform(-0.05, 0.05)  # about +-3 degrees
        self.c, self.s = float(np.cos(rot)), float(np.sin(rot))
        self.rot = float(rot)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        dy, dx = yy - self.oy, xx - self.ox
        self.ya = (self.c * dy + self.s * dx) / self.sy + h / 2
        self.xa = (-self.s * dy + self.c * dx) / self.sx + w / 2

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) reference (y, x) points -> image pixels."""
        pts = np.asarray(points, dtype=np.float64)
        d0 = (pts[:, 0] - self.h / 2) * self.sy
        d1 = (pts[:, 1] - self.w / 2) * self.sx
        y = self.oy + self.c * d0 - self.s * d1
        x = self.ox + self.s * d0 + self.c * d1
        return np.stack([y, x], 1)


def make_case(
    rng: np.random.Generator,
    label: Any = None,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    *,
    prevalence: float | dict[str, float] = 0.3,
    normal_fraction: float = 0.15,
) -> PhantomCase:
    """Generate one chest X-ray.

    ``label``: None (random subset), ``'normal'``, a finding name, a list of names or a
    dict name -> 0/1. For random labels, ``normal_fraction`` of the images are normal
    and each finding of the others is present with its ``prevalence`` (one value, or a
    dict finding -> value, unnamed findings 0.3): the default 0.3 for every finding is
    the sample study's; CheXseg's benchmark makes lung lesion and pneumothorax rare
    (2-5 %) as in CheXpert.
    """
    labels = _resolve(rng, label, prevalence, normal_fraction)
    h, w = shape
    s = min(h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    pl = _Placement(rng, shape)
    ya, xa = pl.ya, pl.xa  # reference-frame coordinates of every pixel
    v, u = ya / h, xa / w
    masks = {f: np.zeros(shape, dtype=bool) for f in CHEST_FINDINGS}

    def img(points) -> np.ndarray:  # reference (fractions of h, w) -> image pixels
        return pl.to_image(np.array(points, dtype=np.float64) * [h, w])

    # patient anatomy (reference frame, fractions of the image): varies between patients
    mid = 0.5 + rng.uniform(-0.015, 0.015)  # trachea / mediastinal midline
    dome = rng.uniform(0.77, 0.83)  # lateral hemidiaphragm level
    hila_v = rng.uniform(0.43, 0.47)
    body = _ellipse(ya, xa, h * 0.55, w * 0.5, h * 0.62, w * 0.47 * rng.uniform(0.95, 1.05))
    att = np.where(body, 0.5, 0.05).astype(np.float32)
    att += 0.15 * np.clip(v - 0.75, 0, None) / 0.25 * body  # abdomen
    lungs, hila, hila_ref, domes, outer = [], [], [], [], []
    for side in (-1, 1):  # -1: image left (patient right)
        cu = mid + side * rng.uniform(0.19, 0.22)
        rv, ru = 0.31 * rng.uniform(0.94, 1.06), 0.145 * rng.uniform(0.92, 1.08)
        lung = _blob(ya, xa, (h * 0.47, w * cu), (h * rv, w * ru), rng, roughness=0.06)
        d = dome + rng.uniform(-0.012, 0.012) - (0.015 if side < 0 else 0.0)  # right higher
        lung &= v < d - 0.06 * (side * (u - mid) < 0.12)  # dome, heart side higher
        lungs.append(lung)
        domes.append(d)
        outer.append(cu + side * ru)
        hu = mid + side * rng.uniform(0.09, 0.11)
        hila_ref.append((hila_v + rng.uniform(-0.01, 0.01), hu))
        hila.append(tuple(img([hila_ref[-1]])[0]))
    lung_any = lungs[0] | lungs[1]
    att[lung_any] = 0.18
    thorax_w = (outer[1] - outer[0]) * w  # internal thoracic diameter, reference pixels
    # mediastinum: width and extent vary; widened (> 0.1 w half-width) when enlarged
    wide = labels["enlarged_cardiomediastinum"]
    med_half = w * (rng.uniform(0.1, 0.14) if wide else rng.uniform(0.055, 0.075))
    top, bottom = rng.uniform(0.06, 0.1), rng.uniform(0.52, 0.58)
    med = (np.abs(xa - w * mid) <= med_half) & (v > top) & (v < bottom)
    if wide:
        masks["enlarged_cardiomediastinum"] = med.copy()
    # heart: the cardiothoracic ratio (widest cardiac diameter / internal thoracic
    # diameter) is > 0.5 in cardiomegaly (clinical definition), < 0.5 otherwise
    big = labels["cardiomegaly"]
    ctr = rng.uniform(0.55, 0.68) if big else rng.uniform(0.36, 0.47)
    angle = -0.3 + rng.uniform(-0.12, 0.12)
    aspect = rng.uniform(0.7, 0.85)  # vertical / horizontal radius
    half = ctr * thorax_w / 2
    rx = half / np.sqrt(np.cos(angle) ** 2 + (aspect * np.sin(angle)) ** 2)
    ry = aspect * rx
    heart_c = (
        h * (0.66 + rng.uniform(-0.025, 0.025)),
        w * (mid + 0.03 + rng.uniform(-0.02, 0.02)),
    )
    heart = _ellipse(ya, xa, heart_c[0], heart_c[1], ry, rx, angle) & (v < max(domes) + 0.02)
    if big:
        masks["cardiomegaly"] = heart.copy()
    att[med | heart] = 0.62
    # vessel markings, brightest near the hila, absent where a pneumothorax is
    marks = np.clip(smooth_noise(rng, shape, s * 0.006), 0, None)
    hil = np.zeros(shape, dtype=np.float32)
    for hy, hx in hila:
        hil += np.exp(-np.sqrt((yy - hy) ** 2 + (xx - hx) ** 2) / (s * 0.12 * pl.sx))
    markings = 0.05 * marks * (0.4 + hil) * lung_any

    if labels["pneumothorax"]:
        k = int(rng.integers(2))
        hv, hu = hila_ref[k]
        d = np.sqrt(((v - hv) / 0.28) ** 2 + ((u - hu) / 0.15) ** 2)
        collapsed = d <= rng.uniform(0.8, 1.0)
        ptx = lungs[k] & ~collapsed & (v < hv + 0.1)
        if not ptx.any():
            ptx = lungs[k] & (v < hv - 0.2)
        masks["pneumothorax"] = ptx
        markings[ptx] = 0.0
        att[ptx] = 0.1
        edge = ndi.binary_dilation(ptx) & ~ptx & lungs[k]
        att[edge] += 0.08  # visceral pleural line
    att += markings

    opac = np.zeros(shape, dtype=np.float32)
    if labels["pleural_effusion"]:
        k = int(rng.integers(2))
        side = -1 if k == 0 else 1
        level = domes[k] - rng.uniform(0.08, 0.18)
        meniscus = level - 0.12 * np.clip(side * (u - mid) - 0.12, 0, None) / 0.2
        fluid = lungs[k] & (v > meniscus)
        masks["pleural_effusion"] = fluid
        opac[fluid] += 0.4
    if labels["consolidation"]:
        k = int(rng.integers(2))
        lower = rng.random() < 0.6
        hv = hila_ref[k][0]
        lobe = (
            lungs[k]
            & ((v > hv + 0.1) if lower else (v < hv - 0.03))
            & (smooth_noise(rng, shape, s * 0.04) > -0.6)
        )
        masks["consolidation"] = lobe
        bronch = np.zeros(shape, dtype=np.float32)
        hy, hx = hila[k]
        for _ in range(4):
            a = rng.uniform(0.4, 1.2) * (1 if lower else -1)
            a = (a if k else np.pi - a) + pl.rot
            pts = np.array([[hy, hx], [hy + s * 0.25 * np.sin(a), hx + s * 0.25 * np.cos(a)]])
            draw_polyline(bronch, pts, 1.0)
        opac += lobe * (0.35 - 0.2 * bronch)
    if labels["airspace_opacity"]:
        patches = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(2, 4))):
            c = random_point_in(lung_any, rng, margin=int(s * 0.04))
            r = s * rng.uniform(0.03, 0.06)
            patches |= irregular_blob(shape, c, (r, r * 1.2), rng, roughness=0.4) & lung_any
        masks["airspace_opacity"] = patches
        opac += 0.16 * ndi.gaussian_filter(patches.astype(np.float32), s * 0.006)
    if labels["edema"]:
        ext = rng.uniform(0.85, 1.2)  # severity: how far the haze spreads from the hila
        haze = np.zeros(shape, dtype=np.float32)
        for hv, hu in hila_ref:
            haze += np.exp(-(((v - hv) / (0.13 * ext)) ** 2) - ((u - hu) / (0.09 * ext)) ** 2)
        ed = lung_any & (haze > 0.35)
        masks["edema"] = ed
        opac += 0.18 * haze * lung_any
    if labels["atelectasis"]:
        k = int(rng.integers(2))
        region = lungs[k] & (v > hila_ref[k][0] + 0.05) & (v < domes[k] - 0.08)
        cy, cx = random_point_in(region if region.any() else lungs[k], rng, margin=2)
        a = rng.uniform(-0.35, 0.35) + pl.rot
        half = s * rng.uniform(0.07, 0.1)
        pts = np.array(
            [
                [cy - half * np.sin(a), cx - half * np.cos(a)],
                [cy + half * np.sin(a), cx + half * np.cos(a)],
            ]
        )
        band = np.zeros(shape, dtype=np.float32)
        bm = draw_polyline(band, pts, 1.0, width=max(3, int(s * 0.016))) & lungs[k]
        masks["atelectasis"] = bm
        opac += 0.25 * bm
    if labels["lung_lesion"]:
        c = random_point_in(lung_any, rng, margin=int(s * 0.03))
        r = s * rng.uniform(0.012, 0.024)
        nod = irregular_blob(shape, c, (r, r), rng, roughness=0.15)
        masks["lung_lesion"] = nod
        opac += 0.3 * ndi.gaussian_filter(nod.astype(np.float32), 0.7)
    att += opac

    # ribs and clavicles over everything, following the thorax
    for side in (-1, 1):
        for i in range(9):
            y0 = 0.16 + 0.075 * i
            xs = np.linspace(0.5 + side * 0.06, 0.5 + side * 0.4, 12)
            t = np.abs(xs - 0.5) / 0.4
            ys = y0 - 0.05 * np.sin(np.pi * t) + 0.06 * t**2
            rib = img(np.stack([ys, xs], 1))
            draw_polyline(att, rib, 0.07, width=max(2, s // 64), mode="add")
        cl = img([[0.12, 0.5 + side * 0.05], [0.09, 0.5 + side * 0.3]])
        draw_polyline(att, cl, 0.1, width=max(2, s // 48), mode="add")
    if labels["support_devices"]:
        dev = np.zeros(shape, dtype=np.float32)
        tip = rng.uniform(0.3, 0.38)
        tube = img([[-0.1, mid], [tip, mid + rng.uniform(-2, 2) / w]])
        dm = draw_polyline(dev, tube, 1.0, width=max(2, s // 80))
        if rng.random() < 0.6:  # central line from a shoulder into the SVC
            side = rng.choice([-1, 1])
            line = img(
                [
                    [0.1, mid + side * 0.3],
                    [0.16, mid + side * 0.15],
                    [0.3, mid + side * 0.03],
                ]
            )
            dm |= draw_polyline(dev, line, 1.0, width=max(2, s // 100))
        masks["support_devices"] = dm
        att = np.maximum(att, 0.95 * dev)

    att = ndi.gaussian_filter(att, s / 400) + rng.normal(0, 0.012, size=shape)
    image = np.clip(np.round(att * 3800), 0, 4095).astype(np.uint16)
    # a label present with an empty region cannot occur; enforce it anyway
    for f in CHEST_FINDINGS:
        if labels[f] and not masks[f].any():
            raise RuntimeError(f"phantom bug: {f} labelled but its mask is empty")
        if not labels[f]:
            masks[f][:] = False
    mask = np.stack([masks[f] for f in CHEST_FINDINGS]).astype(np.uint8)
    heart_px = pl.to_image(np.array([heart_c]))[0]
    anatomy = {
        # image pixels / rotation in radians / fractions: diagnostics for tests and users
        "shift": [float(pl.oy - h / 2), float(pl.ox - w / 2)],
        "scale": [float(pl.sy), float(pl.sx)],
        "rotation": float(pl.rot),
        "cardiothoracic_ratio": float(ctr),
        "heart_centre": [float(heart_px[0]), float(heart_px[1])],
        "hila": [[float(y), float(x)] for y, x in hila],
        "carina": [float(t) for t in img([[0.35, mid]])[0]],  # on the midline
        "mediastinum_half_width": float(med_half * pl.sx),
        "thorax_width": float(thorax_w * pl.sx),
    }
    meta = {"spacing": (0.14 * 2048 / h, 0.14 * 2048 / w), "view": "PA", "anatomy": anatomy}
    return PhantomCase(image=image, mask=mask, labels=labels, meta=meta)
