"""Vendor slides: a generated Hamamatsu NDPI (OpenSlide) and DICOM WSI (wsidicom), by content."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from dicom_factory import make_dicom_wsi

from napari_wsseg.io import can_read, read_image
from napari_wsseg.io.slide_vendor import openslide_vendor

H, W = 1024, 1536


def _pattern(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x // 64 + y // 64) % 2 * 200], -1).astype(
        np.uint8
    )


def write_ndpi(path, mpp: float = 0.5) -> np.ndarray:
    """A 3-level NDPI as Hamamatsu writes it: one JPEG strip per level, the NDPI
    format flag (65420), source lens (65421) and slide offsets (65422-65424)."""
    base = _pattern(H, W)
    with tifffile.TiffWriter(path) as tw:
        for k in range(3):
            level = base[:: 2**k, :: 2**k]
            tw.write(
                level,
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 95},
                rowsperstrip=level.shape[0],
                resolution=(1e4 / (mpp * 2**k), 1e4 / (mpp * 2**k)),
                resolutionunit="CENTIMETER",
                extratags=[
                    (65420, "I", 1, 1, True),
                    (65421, "f", 1, 20.0, True),
                    (65422, "i", 1, 0, True),
                    (65423, "i", 1, 0, True),
                    (65424, "i", 1, 0, True),
                ],
                metadata=None,
            )
    return base


def test_ndpi_opens_through_openslide_with_levels_and_mpp_from_the_file(tmp_path):
    base = write_ndpi(tmp_path / "slide.ndpi")
    assert openslide_vendor(tmp_path / "slide.ndpi") == "hamamatsu"
    image = read_image(tmp_path / "slide.ndpi")
    assert image.meta["format"] == "openslide" and image.meta["vendor"] == "hamamatsu"
    assert image.multiscale and image.rgb and image.modality == "slide"
    assert image.scale == pytest.approx((0.5, 0.5)) and image.meta["mpp_known"]
    assert image.spatial_shape == (H, W)
    downsamples = image.meta["level_downsamples"]
    assert downsamples[:3] == [1.0, 2.0, 4.0]
    for level, d in zip(image.data, downsamples):
        assert level.shape[:2] == (round(H / d), round(W / d))
    # JPEG q95: small errors, larger only at the checkerboard's edges
    crop = np.asarray(image.data[0][200:700, 300:900]).astype(int)  # across chunk borders
    assert np.median(np.abs(crop - base[200:700, 300:900])) <= 2
    assert np.abs(crop - base[200:700, 300:900]).mean() < 6
    low = np.asarray(image.data[2][50:200, 60:300]).astype(int)
    assert np.median(np.abs(low - base[::4, ::4][50:200, 60:300])) <= 2


def test_backend_follows_content_not_the_extension(tmp_path):
    write_ndpi(tmp_path / "slide.ndpi")
    shutil.copy(tmp_path / "slide.ndpi", tmp_path / "renamed.tif")
    assert read_image(tmp_path / "renamed.tif").meta["format"] == "openslide"
    tifffile.imwrite(tmp_path / "plain.tif", _pattern(64, 64), photometric="rgb")
    assert read_image(tmp_path / "plain.tif").meta["format"] == "tiff"  # tifffile's
    assert can_read(tmp_path / "renamed.tif")


def test_dicom_wsi_opens_through_wsidicom_lazily_with_levels_from_the_files(tmp_path):
    base = _pattern(512, 768)
    make_dicom_wsi(tmp_path / "wsi", base, tile=128, n_levels=3, mpp=0.25)
    for target in (tmp_path / "wsi", tmp_path / "wsi" / "level1.dcm"):
        image = read_image(target)
        assert image.meta["format"] == "dicom-wsi" and image.multiscale and image.rgb
        assert image.scale == pytest.approx((0.25, 0.25))
        assert image.meta["level_downsamples"] == [1.0, 2.0, 4.0]
        assert [lv.shape for lv in image.data] == [(512, 768, 3), (256, 384, 3), (128, 192, 3)]
        assert image.data[0].chunksize[:2] == (128, 128)  # the file's tiles
        np.testing.assert_array_equal(
            image.data[0][100:300, 50:400].compute(), base[100:300, 50:400]
        )
        np.testing.assert_array_equal(image.data[2][10:90].compute(), base[::4, ::4][10:90])
    assert image.meta["files"] == ["level0.dcm", "level1.dcm", "level2.dcm"]


def test_slides_go_into_a_study_with_their_files(tmp_path):
    from napari_wsseg.study import Study

    make_dicom_wsi(tmp_path / "wsi", _pattern(256, 256), n_levels=2)
    write_ndpi(tmp_path / "slide.ndpi")
    with Study.create(tmp_path / "s") as study:
        wsi = study.image(study.add_image(tmp_path / "wsi", None, labels={"tumor": 1}))
        ndpi = study.image(study.add_image(tmp_path / "slide.ndpi", "slide"))
        assert wsi.modality == "slide" and sorted(p.name for p in wsi.path.iterdir()) == [
            "level0.dcm",
            "level1.dcm",
        ]
        assert read_image(ndpi.path).meta["vendor"] == "hamamatsu"
        assert study.check() == []
