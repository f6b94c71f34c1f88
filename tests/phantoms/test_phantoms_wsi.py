"""The clinical-size slide generator: a seeded, tiled JPEG OME-TIFF pyramid, streamed."""

from __future__ import annotations

import tracemalloc

import numpy as np
import tifffile

from napari_wsseg.io import open_slide
from napari_wsseg.phantoms.wsi import LAYOUT, reference_layout, write_wsi


def test_wsi_is_a_seeded_tiled_jpeg_ome_pyramid_with_tissue_and_tumour(tmp_path):
    info = write_wsi(tmp_path / "a.ome.tif", (2048, 3072), seed=1, tissue=0.3, tumour=0.1, bank=2)
    again = write_wsi(tmp_path / "b.ome.tif", (2048, 3072), seed=1, tissue=0.3, tumour=0.1, bank=2)
    pixels = [tifffile.imread(tmp_path / n, level=1) for n in ("a.ome.tif", "b.ome.tif")]
    np.testing.assert_array_equal(*pixels)  # seeded (the OME XML holds a fresh UUID)
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tf:
        assert tf.is_ome and tf.is_bigtiff
        page = tf.series[0].levels[0].keyframe
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.JPEG
        assert [lv.shape for lv in tf.series[0].levels] == [
            (2048, 3072, 3), (1024, 1536, 3), (512, 768, 3)]  # fmt: skip
    assert info["levels"] == again["levels"] == 3 and info["seconds"] > 0
    assert 0.2 < info["tissue_fraction"] < 0.45
    assert 0.05 < info["tumour_fraction_of_tissue"] < 0.2
    image = open_slide(tmp_path / "a.ome.tif")
    assert image.meta["mpp"] == (0.5, 0.5)
    lvl0, lvl1 = (np.asarray(image.data[k]) for k in (0, 1))
    layout = reference_layout((2048, 3072), seed=1, tissue=0.3, tumour=0.1)
    cls = np.repeat(np.repeat(layout, LAYOUT, 0), LAYOUT, 1)[:2048, :3072]
    grey = lvl0.min(axis=-1)
    assert (grey[cls == 0] >= 240).mean() > 0.99  # glass is white
    assert np.median(grey[cls == 1]) < 200  # tissue is stained
    # tumour (dense, large nuclei) is darker than normal tissue on average
    assert lvl0[cls == 2].mean() < lvl0[cls == 1].mean() - 5
    # level 1 is composed, not downsampled, yet looks like level 0 halved
    half = lvl0.reshape(1024, 2, 1536, 2, 3).mean(axis=(1, 3))
    assert abs(float(half.mean()) - float(lvl1.mean())) < 3


def test_wsi_generation_memory_does_not_grow_with_the_slide(tmp_path):
    write_wsi(tmp_path / "warm.ome.tif", (512, 512), seed=0, bank=1)  # imports, caches
    peaks = []
    for side in (1024, 4096):
        tracemalloc.start()
        write_wsi(tmp_path / f"s{side}.ome.tif", (side, side), seed=0, bank=2)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    image_bytes = 4096 * 4096 * 3  # 50 MB: never held
    assert peaks[1] < image_bytes / 5
    assert peaks[1] < 1.5 * peaks[0] + 2 * 2**20  # 16x the pixels, about the same memory
