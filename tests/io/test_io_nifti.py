"""NIfTI volumes: axial-first (Z, Y, X) LPS order, spacing from the affine, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from napari_wsseg.io import ImageReadError, read_image, read_mask, write_mask

DATA = Path(data_path)


def test_anatomical_las_volume_is_axial_first_lps():
    img = nib.load(DATA / "anatomical.nii")  # LAS, 2 mm voxels, shape (33, 41, 25)
    image = read_image(DATA / "anatomical.nii")
    src = np.asanyarray(img.dataobj)
    assert "".join(nib.aff2axcodes(img.affine)) == "LAS"
    # LAS -> LPS flips the second axis; (X, Y, Z) -> (Z, Y, X) transposes
    expected = src[:, ::-1, :].transpose(2, 1, 0)
    assert image.data.shape == (25, 41, 33)
    np.testing.assert_array_equal(image.data, expected)
    assert image.data.dtype.isnative
    assert image.scale == pytest.approx((2.0, 2.0, 2.0))
    assert image.modality == "ct" and image.contrast_limits == (-125.0, 350.0)
    assert image.meta["source_axcodes"] == "LAS"
    np.testing.assert_allclose(image.meta["affine"], img.affine)


def test_anisotropic_spacing_follows_the_axes():
    image = read_image(DATA / "standard.nii.gz")  # RAS, zooms (1, 3, 2)
    img = nib.load(DATA / "standard.nii.gz")
    assert tuple(float(z) for z in img.header.get_zooms()) == (1.0, 3.0, 2.0)
    assert image.scale == pytest.approx((2.0, 3.0, 1.0))
    assert image.data.shape == (7, 5, 4)


def test_4d_nifti_is_refused():
    with pytest.raises(ImageReadError, match=r"example4d\.nii\.gz: 4D NIfTI.*3D volume"):
        read_image(DATA / "example4d.nii.gz")


def _oblique_flipped_affine() -> np.ndarray:
    """Voxel axes i -> superior, j -> anterior, k -> right (RAS world), tilted 10 degrees."""
    t = np.deg2rad(10)
    columns = np.array([[0, 0, 1], [np.sin(t), np.cos(t), 0], [np.cos(t), -np.sin(t), 0]])
    affine = np.eye(4)
    affine[:3, :3] = columns * np.array([3.0, 0.8, 0.7])  # zoom of i, j, k
    affine[:3, 3] = (40, -20, 5)
    return affine


def test_oblique_flipped_volume_reads_axial_first_and_mask_round_trips(tmp_path):
    affine = _oblique_flipped_affine()
    zooms = np.linalg.norm(affine[:3, :3], axis=0)  # (3.0, 0.8, 0.7) along i, j, k
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(6, 9, 11)).astype(np.int16)  # (i, j, k)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "oblique.nii.gz")
    image = read_image(tmp_path / "oblique.nii.gz")
    # i runs mostly superior (Z), j mostly anterior (flipped to posterior = Y), k to the
    # right (flipped to left = X): axial slices first
    assert image.data.shape == (6, 9, 11)
    np.testing.assert_array_equal(image.data, data[:, ::-1, ::-1])
    assert image.scale == pytest.approx(tuple(zooms))
    assert image.meta["oblique"] is True
    mask = (image.data > 500).astype(np.uint8)
    write_mask(tmp_path / "mask.nii.gz", mask, like=image)
    saved = nib.load(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), (data > 500).astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.nii.gz"), mask)


def test_truncated_and_fake_nifti_are_clear_errors(tmp_path):
    raw = gzip.decompress((DATA / "standard.nii.gz").read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) - 40])
    with pytest.raises(ImageReadError, match=r"cut\.nii: .*truncated"):
        read_image(tmp_path / "cut.nii")
    whole = gzip.compress(raw[:352] + np.zeros(140, np.uint8).tobytes())
    (tmp_path / "cutgz.nii.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageReadError, match=r"cutgz\.nii\.gz"):
        read_image(tmp_path / "cutgz.nii.gz")
    (tmp_path / "fake.nii").write_text("not a volume " * 50)
    with pytest.raises(ImageReadError, match=r"fake\.nii: not a readable NIfTI"):
        read_image(tmp_path / "fake.nii")
