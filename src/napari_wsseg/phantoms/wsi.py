"""Clinical-size slide phantom (e.g. 100k x 100k), written tile by tile.

``write_wsi`` writes a seeded, JPEG-compressed, pyramidal OME-TIFF without ever
holding the image: a coarse layout (one value per ``LAYOUT`` level-0 pixels: a few
irregular tissue islands, tumour regions in a small fraction of the tissue) is
the only slide-sized array, and each 256x256 tile is composed on the fly from a
small bank of H&E textures rendered with the stain model of :mod:`.slide`
(normal stroma with nuclei and lymphocyte clusters, tumour with large vesicular
nuclei) through the layout, upsampled to the tile. ``tifffile`` takes the tiles
from an iterator, so memory stays flat whatever the slide size. Pyramid levels
halve the previous one; each is composed the same way from a downsampled bank
(not by downsampling level 0, which would need level 0 again).

The point is the size and the on-disk structure (tiles, levels, JPEG), for
streaming inference benchmarks; the tumour texture matches :mod:`.slide`'s
phantom so a model trained on those slides finds it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_wsseg.phantoms.common import irregular_blob, smooth_noise
from napari_wsseg.phantoms.slide import _E, _H, _scatter, _stamp

TILE = 256
LAYOUT = 64  # level-0 pixels per layout pixel
GLASS = 250.0


def _texture(rng: np.random.Generator, tumour: bool, side: int = TILE) -> np.ndarray:
    """One tissue patch (side, side, 3) uint8, normal or tumour (stain model of .slide)."""
    shape = (side, side)
    full = np.ones(shape, bool)
    fib = ndi.gaussian_filter1d(smooth_noise(rng, shape, 1.5, 1), 4.0, axis=int(rng.integers(2)))
    eosin = 0.35 + 0.08 * fib / max(float(fib.std()), 1e-6)
    eosin = eosin + 0.08 * smooth_noise(rng, shape, side * 0.05, 1)
    hema = np.zeros(shape, np.float32)
    if tumour:
        eosin *= 0.9
        big = [_stamp(rng, rng.uniform(3.5, 5.5), rng.uniform(1.0, 1.6), True) for _ in range(16)]
        _scatter(hema, full, rng, 1 / 240, big, (0.7, 1.0))
    else:
        small = [
            _stamp(rng, rng.uniform(1.8, 2.8), rng.uniform(1.0, 1.4), False) for _ in range(8)
        ]
        lymphs = [_stamp(rng, rng.uniform(1.6, 2.1), 1.0, False) for _ in range(4)]
        lymph = smooth_noise(rng, shape, side * 0.08, 1) > 1.0
        _scatter(hema, full, rng, 1 / 260, small, (0.5, 0.8))
        _scatter(hema, lymph, rng, 1 / 45, lymphs, (0.8, 1.1))
    od = hema[..., None] * 1.2 * _H + np.clip(eosin, 0, None)[..., None] * _E + 0.03
    od = od + rng.normal(0.0, 0.015, (side, side, 1))
    rgb = GLASS * np.exp(-od) + rng.normal(0.0, 2.0, (side, side, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def make_layout(
    rng: np.random.Generator, shape: tuple[int, int], tissue: float, tumour: float
) -> np.ndarray:
    """Coarse layout (uint8: 0 glass, 1 tissue, 2 tumour) of a slide of level-0 ``shape``.

    Islands are added until they cover about ``tissue`` of the slide; tumour blobs
    inside the tissue until they cover about ``tumour`` of the tissue.
    """
    small = (max(8, -(-shape[0] // LAYOUT)), max(8, -(-shape[1] // LAYOUT)))
    out = np.zeros(small, np.uint8)
    side = min(small)
    for _ in range(40):
        if (out > 0).mean() >= tissue:
            break
        r = side * rng.uniform(0.08, 0.16)
        c = (rng.uniform(r, small[0] - r), rng.uniform(r, small[1] - r))
        radii = (r * rng.uniform(0.6, 1.4), r)
        out[irregular_blob(small, c, radii, rng, roughness=0.3, angle=rng.uniform(0, np.pi))] = 1
    ys, xs = np.nonzero(out)
    for _ in range(40):
        if len(ys) == 0 or (out == 2).sum() >= tumour * len(ys):
            break
        i = rng.integers(len(ys))
        r = side * rng.uniform(0.01, 0.03)
        blob = irregular_blob(small, (ys[i], xs[i]), (r, r * rng.uniform(0.7, 1.3)), rng, 0.35)
        out[blob & (out > 0)] = 2
    return out


def _classes(layout: np.ndarray, y0: int, x0: int, span: int) -> np.ndarray:
    """Per-pixel class of a TILE x TILE output tile covering ``span`` level-0 pixels."""
    ly0, lx0, n = y0 // LAYOUT, x0 // LAYOUT, max(1, span // LAYOUT)
    win = layout[ly0 : ly0 + n, lx0 : lx0 + n]
    if win.shape != (n, n):
        win = np.pad(win, ((0, n - win.shape[0]), (0, n - win.shape[1])))
    if n <= TILE:
        return np.repeat(np.repeat(win, TILE // n, 0), TILE // n, 1)
    step = n // TILE
    return win[::step, ::step][:TILE, :TILE]


def _level_tiles(
    layout: np.ndarray, shape: tuple[int, int], k: int, banks: dict[str, list[np.ndarray]]
) -> Iterator[np.ndarray]:
    """The TILE x TILE tiles of level ``k`` (downsample 2**k), row-major."""
    h, w = -(-shape[0] // 2**k), -(-shape[1] // 2**k)
    span = TILE * 2**k
    glass = np.full((TILE, TILE, 3), int(GLASS), np.uint8)
    for ty in range(-(-h // TILE)):
        for tx in range(-(-w // TILE)):
            cls = _classes(layout, ty * span, tx * span, span)
            if not cls.any():
                yield glass
                continue
            pick = (ty * 7919 + tx * 104729 + k) % len(banks["normal"])
            tile = np.where((cls == 1)[..., None], banks["normal"][pick], glass)
            yield np.where((cls == 2)[..., None], banks["tumour"][pick], tile)


def _bank_at(bank: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Each texture box-downsampled by 2**k and tiled back to TILE x TILE."""
    f = 2**k
    if f >= TILE:
        return [
            np.broadcast_to(t.mean(axis=(0, 1)).astype(np.uint8), t.shape).copy() for t in bank
        ]
    out = []
    for t in bank:
        s = t.reshape(TILE // f, f, TILE // f, f, 3).mean(axis=(1, 3))
        out.append(np.tile(np.round(s).astype(np.uint8), (f, f, 1)))
    return out


def write_wsi(
    path: str | Path,
    shape: tuple[int, int] = (100_000, 100_000),
    seed: int = 0,
    tissue: float = 0.3,
    tumour: float = 0.05,
    mpp: float = 0.5,
    quality: int = 80,
    bank: int = 8,
) -> dict[str, Any]:
    """Write a pyramidal JPEG OME-TIFF of level-0 ``shape`` tile by tile; return its facts.

    ``tissue``: target fraction of the slide covered by tissue islands; ``tumour``:
    target fraction of the tissue that is tumour. Returns the shape, levels, file
    size, the layout's tissue / tumour fractions and the generation seconds.
    """
    import tifffile

    from napari_wsseg.io.atomic import atomic_write

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    layout = make_layout(rng, shape, tissue, tumour)
    base = {
        "normal": [_texture(rng, False) for _ in range(bank)],
        "tumour": [_texture(rng, True) for _ in range(bank)],
    }
    n_levels = 1
    while max(shape) // 2**n_levels >= 2 * TILE:
        n_levels += 1
    opts: dict[str, Any] = {
        "tile": (TILE, TILE),
        "dtype": np.uint8,
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality},
        "resolutionunit": "CENTIMETER",
    }

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            for k in range(n_levels):
                banks = {name: _bank_at(b, k) for name, b in base.items()}
                lshape = (-(-shape[0] // 2**k), -(-shape[1] // 2**k), 3)
                res = 1e4 / (mpp * 2**k)
                extra: dict[str, Any] = (
                    {
                        "subifds": n_levels - 1,
                        "metadata": {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp},
                    }  # fmt: skip
                    if k == 0
                    else {"subfiletype": 1, "metadata": None}
                )
                tiles = _level_tiles(layout, shape, k, banks)
                tif.write(tiles, shape=lshape, resolution=(res, res), **opts, **extra)

    atomic_write(path, write)
    fg = layout > 0
    return {
        "path": str(path),
        "shape": list(shape),
        "levels": n_levels,
        "seed": seed,
        "bytes": Path(path).stat().st_size,
        "tissue_fraction": float(fg.mean()),
        "tumour_fraction_of_tissue": float((layout == 2).sum() / max(1, fg.sum())),
        "seconds": time.perf_counter() - t0,
    }


def reference_layout(shape: tuple[int, int], seed: int = 0, tissue: float = 0.3,
                     tumour: float = 0.05) -> np.ndarray:  # fmt: skip
    """The layout ``write_wsi`` used for these arguments (same seed, same draws)."""
    return make_layout(np.random.default_rng(seed), shape, tissue, tumour)
