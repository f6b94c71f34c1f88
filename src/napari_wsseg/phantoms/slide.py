"""Pathology slide phantom: H&E-like tissue on glass, with tumour regions in positives.

Colour follows the Beer-Lambert stain model (Ruifrok & Johnston stain vectors):
each pixel's optical density is a haematoxylin amount times the H vector plus an
eosin amount times the E vector. Tissue is eosin stroma with fibre texture and
small round nuclei; normal tissue also holds dense lymphocyte clusters (many
small dark nuclei), so a tile's mean colour alone does not tell tumour from
normal. Tumour regions carry large, pleomorphic, vesicular nuclei with a
nucleolus on paler stroma. At 0.5 um/pixel a 32x32 tile holds a few nuclei,
enough to separate the classes by nucleus size and texture.

``write_pyramid`` writes the image as a tiled pyramidal TIFF (SubIFDs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import PhantomCase, irregular_blob, resolve_binary, smooth_noise

DEFAULT_SHAPE = (2048, 2048)
DEFAULT_MPP = 0.5
_H = np.array([0.65, 0.70, 0.29], dtype=np.float32)
_E = np.array([0.07, 0.99, 0.11], dtype=np.float32)


def _region(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n: int,
    size: tuple[float, float],
    roughness: float,
) -> np.ndarray:
    """Union of ``n`` irregular blobs (radius a fraction ``size`` of the side), built coarse."""
    f = max(1, min(shape) // 256)
    small = (shape[0] // f + 1, shape[1] // f + 1)
    out = np.zeros(small, dtype=bool)
    for _ in range(n):
        r = min(small) * rng.uniform(*size)
        c = (rng.uniform(r, small[0] - r), rng.uniform(r, small[1] - r))
        out |= irregular_blob(
            small,
            c,
            (r * rng.uniform(0.7, 1.3), r),
            rng,
            roughness=roughness,
            angle=rng.uniform(0, np.pi),
        )
    big = np.repeat(np.repeat(out, f, 0), f, 1)[: shape[0], : shape[1]]
    return ndi.binary_opening(big, iterations=1) if f > 1 else big


def _stamp(rng: np.random.Generator, r: float, aspect: float, vesicular: bool) -> np.ndarray:
    """One nucleus: haematoxylin amount on a small square patch."""
    half = int(np.ceil(r * max(aspect, 1.0))) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    a = rng.uniform(0, np.pi)
    y, x = np.cos(a) * yy + np.sin(a) * xx, -np.sin(a) * yy + np.cos(a) * xx
    d = np.sqrt((y / (r * aspect)) ** 2 + (x / r) ** 2)
    nuc = np.clip(1.6 * (1.0 - d) + 0.4, 0.0, 1.0) * (d <= 1.0)
    if vesicular:
        # chromatin on the rim, paler centre, one dark nucleolus
        nuc *= 0.7 + 0.3 * np.clip(d, 0, 1) ** 2
        ny, nx = rng.normal(0, r * 0.2, 2)
        nuc = np.maximum(nuc, 1.1 * ((yy - ny) ** 2 + (xx - nx) ** 2 <= max(1.0, r * 0.25) ** 2))
    return nuc.astype(np.float32)


def _scatter(
    hema: np.ndarray,
    region: np.ndarray,
    rng: np.random.Generator,
    density: float,
    stamps: list[np.ndarray],
    amount: tuple[float, float],
) -> None:
    """Place nuclei with ``density`` per pixel inside ``region`` (max-composited)."""
    h, w = hema.shape
    n = rng.poisson(density * h * w)
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    keep = region[ys, xs]
    for y, x in zip(ys[keep], xs[keep]):
        s = stamps[rng.integers(len(stamps))] * rng.uniform(*amount)
        k = s.shape[0] // 2
        y0, x0 = y - k, x - k
        sy = slice(max(y0, 0), min(y0 + s.shape[0], h))
        sx = slice(max(x0, 0), min(x0 + s.shape[1], w))
        sub = s[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
        np.maximum(hema[sy, sx], sub, out=hema[sy, sx])


def make_case(
    rng: np.random.Generator,
    label: Any = None,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    mpp: float = DEFAULT_MPP,
) -> PhantomCase:
    """Generate one slide (RGB uint8, (Y, X, 3)); label ``{'tumor': 0/1}``."""
    positive = resolve_binary(rng, label, "tumor")
    h, w = shape
    tissue = _region(rng, shape, int(rng.integers(1, 4)), (0.2, 0.32), 0.3)
    tissue &= ~_region(rng, shape, 2, (0.04, 0.08), 0.4)  # a few holes / tears
    if tissue.mean() > 0.65:  # keep >= 30 % glass
        tissue &= ndi.binary_erosion(tissue, iterations=max(1, min(shape) // 20))
    mask = np.zeros(shape, dtype=np.uint8)
    if positive:
        tumour = np.zeros(shape, dtype=bool)
        for _ in range(10):
            tumour |= _region(rng, shape, int(rng.integers(1, 4)), (0.06, 0.12), 0.35) & tissue
            if tumour.mean() > 0.01:
                break
        if not tumour.any():  # tiny slides: one blob centred on tissue
            ys, xs = np.nonzero(tissue)
            i = rng.integers(len(ys))
            tumour = irregular_blob(shape, (ys[i], xs[i]), (min(shape) * 0.08,) * 2, rng) & tissue
        mask[tumour] = 1
    else:
        tumour = np.zeros(shape, dtype=bool)
    normal = tissue & ~tumour
    lymph = normal & (smooth_noise(rng, shape, min(shape) * 0.03, max(1, h // 256)) > 1.0)

    fib = smooth_noise(rng, shape, 1.5, 1)
    fib = ndi.gaussian_filter1d(fib, 4.0, axis=int(rng.integers(2)))
    eosin = np.where(tissue, 0.35 + 0.08 * fib / max(float(fib.std()), 1e-6), 0.0)
    eosin = eosin + 0.08 * smooth_noise(rng, shape, min(shape) * 0.05, max(1, h // 256)) * tissue
    eosin[tumour] *= 0.9
    hema = np.zeros(shape, dtype=np.float32)
    small = [_stamp(rng, rng.uniform(1.8, 2.8), rng.uniform(1.0, 1.4), False) for _ in range(8)]
    lymphs = [_stamp(rng, rng.uniform(1.6, 2.1), 1.0, False) for _ in range(4)]
    big = [_stamp(rng, rng.uniform(3.5, 5.5), rng.uniform(1.0, 1.6), True) for _ in range(16)]
    _scatter(hema, normal, rng, 1 / 260, small, (0.5, 0.8))
    _scatter(hema, lymph, rng, 1 / 45, lymphs, (0.8, 1.1))
    _scatter(hema, tumour, rng, 1 / 240, big, (0.7, 1.0))
    hema *= 1.2
    od = (hema[..., None] * _H + np.clip(eosin, 0, None)[..., None] * _E).astype(np.float32)
    od += 0.03 * tissue[..., None]
    od += rng.normal(0.0, 0.015, size=(h, w, 1)).astype(np.float32)
    rgb = 250.0 * np.exp(-od) + rng.normal(0.0, 2.0, size=(h, w, 3)).astype(np.float32)
    image = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    meta = {
        "mpp": float(mpp),
        "spacing": (float(mpp), float(mpp)),
        "tissue_fraction": float(tissue.mean()),
        "tumour_fraction": float(tumour.mean()),
    }
    return PhantomCase(image=image, mask=mask, labels={"tumor": int(positive)}, meta=meta)


def downsample2(img: np.ndarray) -> np.ndarray:
    """Halve an image's Y and X by 2x2 averaging (odd edges dropped, min size 1)."""
    h, w = max(img.shape[0] // 2, 1), max(img.shape[1] // 2, 1)
    a = img[: 2 * h, : 2 * w].astype(np.float32)
    if a.shape[0] >= 2 and a.shape[1] >= 2:
        a = a.reshape(h, 2, w, 2, *img.shape[2:]).mean(axis=(1, 3))
    return np.round(a).astype(img.dtype)


def write_pyramid(
    path: str | Path,
    image: np.ndarray,
    tile: int = 256,
    levels: int = 3,
    mpp: float = DEFAULT_MPP,
    compression: str = "jpeg",
) -> Path:
    """Write ``image`` as a tiled pyramidal TIFF: level 0 plus ``levels - 1`` SubIFDs.

    Each level halves the previous one. Resolution tags carry the pixel size
    (``mpp`` um at level 0, in pixels per centimetre) and the description holds
    ``{"mpp": ...}``. ``compression`` is ``'jpeg'`` or ``'zlib'``.
    """
    import tifffile

    from napari_wsseg.io.atomic import atomic_write

    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    if compression not in ("jpeg", "zlib"):
        raise ValueError(f"compression must be 'jpeg' or 'zlib', got {compression!r}")
    rgb = image.ndim == 3
    opts: dict[str, Any] = {
        "tile": (tile, tile),
        "photometric": "rgb" if rgb else "minisblack",
        "compression": compression,
        "resolutionunit": "CENTIMETER",
    }
    if compression == "jpeg":
        opts["compressionargs"] = {"level": 90}

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp) as tif:
            tif.write(
                image,
                subifds=levels - 1,
                resolution=(1e4 / mpp, 1e4 / mpp),
                description=json.dumps({"mpp": mpp, "levels": levels}),
                metadata=None,
                **opts,
            )
            level = image
            for k in range(1, levels):
                level = downsample2(level)
                res = 1e4 / (mpp * 2**k)
                tif.write(level, subfiletype=1, resolution=(res, res), metadata=None, **opts)

    return atomic_write(path, write)
