"""2D PNG / JPEG / TIFF: 16-bit range kept, RGB flag, modality guess, bad files."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_wsseg.io import ImageReadError, read_image


def test_png_16bit_keeps_range_and_large_grey_is_mammo(tmp_path):
    img = np.zeros((2000, 1200), np.uint16)
    img[100:300, 200:400] = 60000
    img[0, 0] = 3
    iio.imwrite(tmp_path / "mammo.png", img)
    image = read_image(tmp_path / "mammo.png")
    assert image.data.dtype == np.uint16
    np.testing.assert_array_equal(image.data, img)
    assert image.modality == "mammo" and not image.rgb
    assert image.meta["spacing_known"] is False and image.scale == (1.0, 1.0)


def test_small_grey_is_xray_and_modality_argument_wins(tmp_path):
    img = (np.arange(64 * 80).reshape(64, 80) % 4096).astype(np.uint16)
    iio.imwrite(tmp_path / "cxr.png", img)
    assert read_image(tmp_path / "cxr.png").modality == "xray"
    assert read_image(tmp_path / "cxr.png", modality="mammo").modality == "mammo"


def test_rgb_is_skin_rgba_drops_alpha_and_grey_rgb_becomes_grey_for_xray(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 255, (40, 50, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "lesion.png", rgba)
    image = read_image(tmp_path / "lesion.png")
    assert image.rgb and image.modality == "skin" and image.contrast_limits is None
    np.testing.assert_array_equal(image.data, rgba[..., :3])
    grey = rng.integers(0, 255, (40, 50), dtype=np.uint8)
    iio.imwrite(tmp_path / "grey_rgb.png", np.stack([grey] * 3, axis=-1))
    image = read_image(tmp_path / "grey_rgb.png", modality="xray")
    assert not image.rgb
    np.testing.assert_array_equal(image.data, grey)


def test_tiff_2d_spacing_from_resolution_tags(tmp_path):
    img = np.arange(300 * 200, dtype=np.uint16).reshape(300, 200)
    # 100 pixels per cm -> 0.1 mm per pixel
    tifffile.imwrite(tmp_path / "xr.tif", img, resolution=(100, 100), resolutionunit="CENTIMETER")
    image = read_image(tmp_path / "xr.tif")
    np.testing.assert_array_equal(image.data, img)
    assert image.scale == pytest.approx((0.1, 0.1)) and image.meta["spacing_known"] is True
    lo, hi = image.contrast_limits
    assert 0 <= lo < hi <= img.max()


def test_jpeg_reads_as_rgb(tmp_path):
    rng = np.random.default_rng(1)
    iio.imwrite(tmp_path / "photo.jpg", rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    image = read_image(tmp_path / "photo.jpg")
    assert image.rgb and image.data.shape == (32, 48, 3)


def test_text_and_truncated_png_are_clear_errors(tmp_path):
    (tmp_path / "fake.png").write_text("hello " * 100)
    with pytest.raises(ImageReadError, match=r"fake\.png: not a readable PNG"):
        read_image(tmp_path / "fake.png")
    iio.imwrite(tmp_path / "full.png", np.arange(10000, dtype=np.uint16).reshape(100, 100))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png: .*truncated"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match=r"notes\.txt: not a recognised image"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
