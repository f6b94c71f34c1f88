"""DICOM series folders built from pydicom's CT_small: order, spacing, broken series."""

from __future__ import annotations

import copy
import random

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from napari_wsseg._reader import get_reader
from napari_wsseg.io import ImageReadError, read_image, read_mask, write_mask

STEP = 2.5


def _make_series(folder, z_indices, size=None, seed=0, *, uid=None, iop=None, prefix="IM", **tags):
    """Write CT_small copies at z = z0 + k * STEP, slice k's pixels offset by 10 * k.

    ``size`` gives the last slice other (Rows, Columns) and zero pixels. ``uid`` (new
    by default) is the SeriesInstanceUID, ``iop`` an ImageOrientationPatient (slices
    then step along its normal), ``prefix`` starts the file names, ``tags`` are set
    on every file (e.g. ``SeriesDescription="Axial"``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    series_uid = uid or generate_uid()
    names = [f"{prefix}{i:04d}" for i in range(len(z_indices))]
    random.Random(seed).shuffle(names)  # file order says nothing about slice order
    normal = np.cross(iop[:3], iop[3:]) if iop is not None else np.array([0.0, 0.0, 1.0])
    for name, k in zip(names, z_indices):
        ds = copy.deepcopy(base)
        pixels = base.pixel_array + 10 * k
        if size is not None and k == z_indices[-1]:
            pixels = np.zeros(size, dtype=pixels.dtype)
            ds.Rows, ds.Columns = size
        ds.PixelData = pixels.astype(base.pixel_array.dtype).tobytes()
        ipp = [float(v) for v in base.ImagePositionPatient]
        ds.ImagePositionPatient = [float(v + STEP * k * n) for v, n in zip(ipp, normal)]
        if iop is not None:
            ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = 100 - k  # wrong on purpose: position decides
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(folder / name)
    return base


def test_series_is_sorted_by_position_with_spacing_from_positions(tmp_path):
    base = _make_series(tmp_path / "ct", list(range(6)))
    image = read_image(tmp_path / "ct")
    hu = base.pixel_array.astype(np.int32) + int(base.RescaleIntercept)
    assert image.data.shape == (6, 128, 128)
    for k in range(6):
        np.testing.assert_array_equal(image.data[k], hu + 10 * k)
    assert image.scale[0] == pytest.approx(STEP)  # not SliceThickness (5 mm)
    assert image.scale[1:] == pytest.approx((0.661468, 0.661468))
    assert image.translate[0] == pytest.approx(float(base.ImagePositionPatient[2]))
    assert image.modality == "ct" and image.contrast_limits == (-125.0, 350.0)
    assert image.meta["n_slices"] == 6
    assert get_reader(str(tmp_path / "ct")) is not None  # napari may open the folder


def test_series_mask_as_nifti_lands_on_dicom_positions(tmp_path):
    base = _make_series(tmp_path / "ct", list(range(4)))
    image = read_image(tmp_path / "ct")
    mask = np.zeros(image.data.shape, np.uint8)
    mask[3, 5, 7] = 1
    write_mask(tmp_path / "mask.nii.gz", mask, like=image)
    img = nib.load(tmp_path / "mask.nii.gz")
    i, j, k = np.argwhere(np.asarray(img.dataobj))[0]
    world_ras = img.affine @ [i, j, k, 1]
    x0, y0, z0 = (float(v) for v in base.ImagePositionPatient)
    spacing = 0.661468
    lps = (x0 + 7 * spacing, y0 + 5 * spacing, z0 + 3 * STEP)
    np.testing.assert_allclose(world_ras[:3], (-lps[0], -lps[1], lps[2]), atol=1e-4)
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.nii.gz"), mask)


def test_missing_slice_is_reported_with_the_gap(tmp_path):
    _make_series(tmp_path / "gap", [0, 1, 2, 4, 5])
    with pytest.raises(ImageReadError, match=r"gap.*missing slice|missing slice.*gap") as err:
        read_image(tmp_path / "gap")
    assert "gap" in str(err.value) and "5 mm" in str(err.value)


def test_mixed_slice_sizes_name_the_file(tmp_path):
    _make_series(tmp_path / "mixed", [0, 1, 2], size=(64, 64))
    with pytest.raises(ImageReadError, match=r"IM\d{4}: mixed slice sizes.*\(64, 64\)"):
        read_image(tmp_path / "mixed")


def test_empty_folder_and_foreign_files_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match=r"empty: empty folder"):
        read_image(tmp_path / "empty")
    _make_series(tmp_path / "dirty", [0, 1, 2])
    (tmp_path / "dirty" / "readme.txt").write_text("scanner notes")
    with pytest.raises(ImageReadError, match=r"readme\.txt: not a DICOM file"):
        read_image(tmp_path / "dirty")


def test_two_series_in_one_folder_are_refused(tmp_path):
    _make_series(tmp_path / "two", [0, 1])
    _make_series(tmp_path / "other", [2, 3])
    for f in (tmp_path / "other").iterdir():
        f.rename(tmp_path / "two" / f"B{f.name}")
    with pytest.raises(ImageReadError, match="2 different series"):
        read_image(tmp_path / "two")
