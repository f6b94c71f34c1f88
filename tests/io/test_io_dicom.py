"""Single DICOM files: HU rescale, MONOCHROME1, compressed syntaxes, broken files."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_wsseg.io import ImageReadError, read_image


def _testfile(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} is not on disk"
    return path


def test_ct_small_is_rescaled_to_hu_with_spacing_and_ct_window():
    path = _testfile("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert image.modality == "ct"
    assert image.data.shape == (1, 128, 128)
    np.testing.assert_array_equal(image.data[0], expected)
    assert image.data.dtype == np.int16  # slope 1, intercept -1024: exact in int16
    assert image.scale == pytest.approx((5.0, 0.661468, 0.661468))
    ipp = [float(v) for v in ds.ImagePositionPatient]
    assert image.translate == pytest.approx((ipp[2], ipp[1], ipp[0]))
    assert image.contrast_limits == (-125.0, 350.0)
    assert image.meta["dicom_modality"] == "CT"


def test_mr_small_reads_raw_values_and_header_window():
    path = _testfile("MR_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.data[0], ds.pixel_array)
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert image.contrast_limits == pytest.approx((centre - width / 2, centre + width / 2))
    assert image.meta["dicom_modality"] == "MR"


def test_fractional_slope_gives_float32_hu(tmp_path):
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1000.25
    ds.save_as(tmp_path / "frac.dcm")
    image = read_image(tmp_path / "frac.dcm")
    assert image.data.dtype == np.float32
    np.testing.assert_allclose(image.data[0], ds.pixel_array * 0.5 - 1000.25)


def test_monochrome1_mammogram_is_inverted_with_mirrored_window(tmp_path):
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    ds.Modality = "MG"
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.ImageLaterality, ds.ViewPosition = "L", "CC"
    ds.WindowCenter, ds.WindowWidth = 1000, 400
    ds.ImagerPixelSpacing = [0.07, 0.07]
    del ds.PixelSpacing
    ds.save_as(tmp_path / "mammo.dcm")
    stored = ds.pixel_array.astype(np.int64)
    bits = int(ds.BitsStored)
    # signed stored values: range [-2^(b-1), 2^(b-1)-1]; inversion maps v -> lo + hi - v
    total = -(2 ** (bits - 1)) + 2 ** (bits - 1) - 1
    image = read_image(tmp_path / "mammo.dcm")
    assert image.modality == "mammo"
    assert image.data.ndim == 2
    np.testing.assert_array_equal(image.data, total - stored)
    assert image.contrast_limits == pytest.approx((total - 1200, total - 800))
    assert image.meta["laterality"] == "L" and image.meta["view"] == "CC"
    assert image.meta["inverted"] is True
    assert image.scale == pytest.approx((0.07, 0.07))


def test_cr_without_spacing_is_xray_with_unknown_spacing(tmp_path):
    ds = pydicom.dcmread(_testfile("MR_small.dcm"))
    ds.Modality = "CR"
    del ds.PixelSpacing
    ds.save_as(tmp_path / "chest")  # DICOM files often have no suffix
    image = read_image(tmp_path / "chest")
    assert image.modality == "xray"
    assert image.scale == (1.0, 1.0) and image.meta["spacing_known"] is False
    np.testing.assert_array_equal(image.data, ds.pixel_array)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_lossless_compressed_decode_equals_uncompressed(name):
    reference = read_image(_testfile("MR_small.dcm"))
    image = read_image(_testfile(name))
    np.testing.assert_array_equal(image.data, reference.data)


def test_compressed_colour_and_jpeg2000_decode():
    rle = read_image(_testfile("SC_rgb_rle.dcm"))
    assert rle.rgb and rle.data.shape == (100, 100, 3) and rle.modality == "skin"
    assert rle.data.dtype == np.uint8 and rle.data.max() > 0
    j2k = read_image(_testfile("JPEG2000.dcm"))
    np.testing.assert_array_equal(j2k.data, pydicom.dcmread(_testfile("JPEG2000.dcm")).pixel_array)


def test_undecodable_compression_names_syntax_and_package():
    path = _testfile("JPEG-lossy.dcm")  # 12-bit JPEG Extended: no installed decoder reads it
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert "JPEG-lossy.dcm" in message
    assert "JPEG Extended" in message and "1.2.840.10008.1.2.4.51" in message
    assert "python-gdcm" in message


def test_truncated_dicom_pixel_data_is_a_clear_error(tmp_path):
    src = _testfile("CT_small.dcm")
    data = open(src, "rb").read()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 5000])
    with pytest.raises(ImageReadError, match=r"cut\.dcm.*(truncated|corrupt)"):
        read_image(tmp_path / "cut.dcm")
    (tmp_path / "header.dcm").write_bytes(data[:400])
    with pytest.raises(ImageReadError, match=r"header\.dcm"):
        read_image(tmp_path / "header.dcm")


def test_text_file_named_dcm_is_rejected(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not an image\n" * 20)
    with pytest.raises(ImageReadError, match=r"notes\.dcm: not a DICOM file"):
        read_image(bad)
    empty = tmp_path / "empty.dcm"
    shutil.copy(bad, empty)
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(empty)
