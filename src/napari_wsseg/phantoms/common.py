"""Shared pieces of the phantom generators: the case record and shape/texture helpers.

Every generator is seeded through a ``np.random.Generator`` only, so a case is a
pure function of the generator state and its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi


@dataclass
class PhantomCase:
    """One generated image with its ground truth.

    ``image`` is the pixel array, ``mask`` the ground-truth mask in the study's mask
    format (see ``study/vocab.py``), ``labels`` the image-level labels (name -> 0/1)
    and ``meta`` physical metadata (``spacing`` etc.).
    """

    image: np.ndarray
    mask: np.ndarray
    labels: dict[str, int]
    meta: dict[str, Any] = field(default_factory=dict)


def resolve_binary(rng: np.random.Generator, label: Any, name: str) -> int:
    """Turn a ``label`` argument into 0/1 for a one-label task.

    Accepts None (drawn with p=0.5), a bool/int, a label name (positive), "normal" /
    "negative" (negative), or a dict holding ``name``.
    """
    if label is None:
        return int(rng.random() < 0.5)
    if isinstance(label, dict):
        if name not in label:
            raise ValueError(f"label dict {label!r} has no {name!r}")
        return int(bool(label[name]))
    if isinstance(label, str):
        if label == name or label in ("positive", "1"):
            return 1
        if label in ("normal", "negative", "0"):
            return 0
        raise ValueError(f"unknown label {label!r}; expected {name!r} or 'normal'")
    return int(bool(label))


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float, coarse: int = 1
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered noise.

    ``coarse`` > 1 draws the noise on a grid ``coarse`` times smaller and upsamples it
    (linear), which is much faster for large smooth fields.
    """
    small = tuple(max(2, int(np.ceil(s / coarse))) for s in shape)
    field_ = ndi.gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma / coarse)
    if coarse > 1:
        zoom = [s / m for s, m in zip(shape, small)]
        field_ = ndi.zoom(field_, zoom, order=1)
        field_ = field_[tuple(slice(0, s) for s in shape)]
    field_ -= field_.mean()
    std = field_.std()
    return field_ / std if std > 0 else field_


def irregular_blob(
    shape: tuple[int, ...],
    center: tuple[float, ...],
    radii: tuple[float, ...],
    rng: np.random.Generator,
    roughness: float = 0.25,
    harmonics: int = 5,
    angle: float = 0.0,
) -> np.ndarray:
    """Boolean 2D/3D blob: an ellipse(oid) whose radius is perturbed by random harmonics.

    ``roughness`` is the relative amplitude of the radial perturbation (0 = smooth
    ellipse). ``angle`` rotates the in-plane (last two) axes.
    """
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    d = [g - c for g, c in zip(grids, center)]
    ca, sa = np.cos(angle), np.sin(angle)
    y, x = d[-2], d[-1]
    d[-2], d[-1] = ca * y + sa * x, -sa * y + ca * x
    r = np.sqrt(sum((di / ri) ** 2 for di, ri in zip(d, radii)))
    theta = np.arctan2(d[-2] / radii[-2], d[-1] / radii[-1])
    pert = np.ones_like(r)
    for h in range(2, 2 + harmonics):
        amp = roughness * rng.uniform(0.2, 1.0) / (h - 1) ** 0.7
        pert += amp * np.cos(h * theta + rng.uniform(0, 2 * np.pi))
    if len(shape) == 3:
        phi = np.arctan2(d[0] / radii[0], np.sqrt(d[-1] ** 2 + d[-2] ** 2) / radii[-1] + 1e-6)
        pert += roughness * 0.5 * np.cos(2 * phi + rng.uniform(0, 2 * np.pi))
    return r <= np.clip(pert, 0.4, None)


def draw_polyline(
    img: np.ndarray, points: np.ndarray, value: float, width: int = 1, mode: str = "max"
) -> np.ndarray:
    """Draw a polyline of (y, x) points into a 2D float array; returns the line mask."""
    from skimage.draw import line

    mask = np.zeros(img.shape, dtype=bool)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        rr, cc = line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
        ok = (rr >= 0) & (rr < img.shape[0]) & (cc >= 0) & (cc < img.shape[1])
        mask[rr[ok], cc[ok]] = True
    if width > 1:
        mask = ndi.binary_dilation(mask, iterations=width // 2)
    if mode == "max":
        img[mask] = np.maximum(img[mask], value)
    elif mode == "add":
        img[mask] += value
    else:
        img[mask] = value
    return mask


def ellipse_mask(
    shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> np.ndarray:
    """Boolean filled 2D ellipse."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    y, x = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    yr, xr = ca * y + sa * x, -sa * y + ca * x
    return (yr / ry) ** 2 + (xr / rx) ** 2 <= 1.0


def random_point_in(mask: np.ndarray, rng: np.random.Generator, margin: int = 0) -> tuple:
    """A random index inside ``mask`` (eroded by ``margin`` when that leaves anything)."""
    m = mask
    if margin > 0:
        eroded = ndi.binary_erosion(mask, iterations=margin)
        if eroded.any():
            m = eroded
    idx = np.flatnonzero(m)
    if idx.size == 0:
        raise ValueError("cannot place a structure: the region is empty")
    return np.unravel_index(idx[rng.integers(idx.size)], mask.shape)
