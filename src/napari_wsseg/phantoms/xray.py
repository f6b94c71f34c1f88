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

Labels: each finding present with p=0.3 (15 % of images are normal). Mask:
(10, Y, X) uint8 in ``CHEST_FINDINGS`` order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import (
    PhantomCase,
    draw_polyline,
    ellipse_mask,
    irregular_blob,
    random_point_in,
    smooth_noise,
)
from napari_wsseg.study.vocab import CHEST_FINDINGS

DEFAULT_SHAPE = (256, 256)


def _resolve(rng: np.random.Generator, label: Any) -> dict[str, int]:
    if label is None:
        if rng.random() < 0.15:
            return dict.fromkeys(CHEST_FINDINGS, 0)
        return {f: int(rng.random() < 0.3) for f in CHEST_FINDINGS}
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


def make_case(
    rng: np.random.Generator, label: Any = None, shape: tuple[int, int] = DEFAULT_SHAPE
) -> PhantomCase:
    """Generate one chest X-ray.

    ``label``: None (random subset), ``'normal'``, a finding name, a list of names or a
    dict name -> 0/1.
    """
    labels = _resolve(rng, label)
    h, w = shape
    s = min(h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    v, u = yy / h, xx / w
    masks = {f: np.zeros(shape, dtype=bool) for f in CHEST_FINDINGS}

    body = ellipse_mask(shape, h * 0.55, w * 0.5, h * 0.62, w * 0.47)
    att = np.where(body, 0.5, 0.05).astype(np.float32)
    att += 0.15 * np.clip(v - 0.75, 0, None) / 0.25 * body  # abdomen
    lungs, hila = [], []
    for side in (-1, 1):  # -1: image left (patient right)
        cx = w * (0.5 + side * rng.uniform(0.19, 0.22))
        lung = irregular_blob(shape, (h * 0.47, cx), (h * 0.31, w * 0.145), rng, roughness=0.06)
        lung &= v < 0.8 - 0.06 * (side * (u - 0.5) < 0.12)  # dome, heart side higher
        lungs.append(lung)
        hila.append((h * 0.45, w * (0.5 + side * 0.1)))
    lung_any = lungs[0] | lungs[1]
    att[lung_any] = 0.18
    # mediastinum and heart
    med_half = w * (0.12 if labels["enlarged_cardiomediastinum"] else 0.065)
    med = (np.abs(xx - w * 0.5) <= med_half) & (v > 0.08) & (v < 0.55)
    if labels["enlarged_cardiomediastinum"]:
        masks["enlarged_cardiomediastinum"] = med.copy()
    big = labels["cardiomegaly"]
    hr = (h * (0.15 if big else 0.11), w * (0.2 if big else 0.135))
    heart = ellipse_mask(shape, h * 0.66, w * 0.53, hr[0], hr[1], angle=-0.3) & (v < 0.82)
    if big:
        masks["cardiomegaly"] = heart.copy()
    att[med | heart] = 0.62
    # vessel markings, brightest near the hila, absent where a pneumothorax is
    marks = np.clip(smooth_noise(rng, shape, s * 0.006), 0, None)
    hil = np.zeros(shape, dtype=np.float32)
    for hy, hx in hila:
        hil += np.exp(-np.sqrt((yy - hy) ** 2 + (xx - hx) ** 2) / (s * 0.12))
    markings = 0.05 * marks * (0.4 + hil) * lung_any

    if labels["pneumothorax"]:
        k = int(rng.integers(2))
        hy, hx = hila[k]
        d = np.sqrt(((yy - hy) / (h * 0.28)) ** 2 + ((xx - hx) / (w * 0.15)) ** 2)
        collapsed = d <= rng.uniform(0.8, 1.0)
        ptx = lungs[k] & ~collapsed & (v < 0.55)
        if not ptx.any():
            ptx = lungs[k] & (v < 0.25)
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
        level = rng.uniform(0.62, 0.72)
        meniscus = level - 0.12 * np.clip(side * (u - 0.5) - 0.12, 0, None) / 0.2
        fluid = lungs[k] & (v > meniscus)
        masks["pleural_effusion"] = fluid
        opac[fluid] += 0.4
    if labels["consolidation"]:
        k = int(rng.integers(2))
        lower = rng.random() < 0.6
        lobe = (
            lungs[k]
            & ((v > 0.55) if lower else (v < 0.42))
            & (smooth_noise(rng, shape, s * 0.04) > -0.6)
        )
        masks["consolidation"] = lobe
        bronch = np.zeros(shape, dtype=np.float32)
        hy, hx = hila[k]
        for _ in range(4):
            a = rng.uniform(0.4, 1.2) * (1 if lower else -1)
            a = a if k else np.pi - a
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
        haze = np.zeros(shape, dtype=np.float32)
        for hy, hx in hila:
            haze += np.exp(-(((yy - hy) / (h * 0.13)) ** 2) - ((xx - hx) / (w * 0.09)) ** 2)
        ed = lung_any & (haze > 0.35)
        masks["edema"] = ed
        opac += 0.18 * haze * lung_any
    if labels["atelectasis"]:
        k = int(rng.integers(2))
        region = lungs[k] & (v > 0.5) & (v < 0.72)
        cy, cx = random_point_in(region if region.any() else lungs[k], rng, margin=2)
        a = rng.uniform(-0.35, 0.35)
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

    # ribs and clavicles over everything
    for side in (-1, 1):
        for i in range(9):
            y0 = h * (0.16 + 0.075 * i)
            xs = np.linspace(w * 0.5 + side * w * 0.06, w * 0.5 + side * w * 0.4, 12)
            t = np.abs(xs - w * 0.5) / (w * 0.4)
            ys = y0 - h * 0.05 * np.sin(np.pi * t) + h * 0.06 * t**2
            draw_polyline(att, np.stack([ys, xs], 1), 0.07, width=max(2, s // 64), mode="add")
        cl = np.array(
            [[h * 0.12, w * 0.5 + side * w * 0.05], [h * 0.09, w * 0.5 + side * w * 0.3]]
        )
        draw_polyline(att, cl, 0.1, width=max(2, s // 48), mode="add")
    if labels["support_devices"]:
        dev = np.zeros(shape, dtype=np.float32)
        tube = np.array([[0, w * 0.5], [h * rng.uniform(0.3, 0.38), w * 0.5 + rng.uniform(-2, 2)]])
        dm = draw_polyline(dev, tube, 1.0, width=max(2, s // 80))
        if rng.random() < 0.6:  # central line from a shoulder into the SVC
            side = rng.choice([-1, 1])
            line = np.array(
                [
                    [h * 0.1, w * (0.5 + side * 0.3)],
                    [h * 0.16, w * (0.5 + side * 0.15)],
                    [h * 0.3, w * (0.5 + side * 0.03)],
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
    meta = {"spacing": (0.14 * 2048 / h, 0.14 * 2048 / w), "view": "PA"}
    return PhantomCase(image=image, mask=mask, labels=labels, meta=meta)
