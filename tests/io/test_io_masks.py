"""write_mask / read_mask: formats, atomic writes, orientation, bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_wsseg.io import ImageData, read_mask, write_mask


@pytest.mark.parametrize("name", ["m.png", "m.tif", "m.tiff"])
def test_2d_mask_round_trips(tmp_path, name):
    mask = np.zeros((30, 40), np.int64)  # napari Labels often hand over int64
    mask[5:10, 5:20] = 2
    mask[20:25, 30:35] = 1
    out = write_mask(tmp_path / name, mask)
    back = read_mask(out)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left


def test_xray_channel_stack_round_trips_as_compressed_tiff(tmp_path):
    import tifffile

    stack = np.zeros((10, 64, 48), np.uint8)
    stack[3, 10:20, 10:20] = 1
    stack[9, 40:50, 5:8] = 1
    write_mask(tmp_path / "findings.tif", stack)
    np.testing.assert_array_equal(read_mask(tmp_path / "findings.tif"), stack)
    with tifffile.TiffFile(tmp_path / "findings.tif") as tf:
        assert tf.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE


def test_volume_without_source_uses_scale_and_translate(tmp_path):
    like = ImageData(
        data=np.zeros((4, 5, 6)), modality="ct", scale=(2.5, 0.7, 0.6), translate=(10, -3, 4)
    )
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1, 2, 3] = 1
    write_mask(tmp_path / "m.nii.gz", mask, like=like)
    img = nib.load(tmp_path / "m.nii.gz")
    np.testing.assert_allclose(img.header.get_zooms(), (0.6, 0.7, 2.5))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nii.gz"), mask)
    # voxel (z=1, y=2, x=3) sits at translate + index * scale in LPS, i.e. RAS (-x, -y, z)
    i, j, k = np.argwhere(np.asarray(img.dataobj))[0]
    lps = (4 + 3 * 0.6, -3 + 2 * 0.7, 10 + 1 * 2.5)
    np.testing.assert_allclose((img.affine @ [i, j, k, 1])[:3], (-lps[0], -lps[1], lps[2]))


def test_bad_masks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported mask format"):
        write_mask(tmp_path / "m.jpg", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="integer labels"):
        write_mask(tmp_path / "m.png", np.full((4, 4), 0.5))
    with pytest.raises(ValueError, match="2D masks"):
        write_mask(tmp_path / "m.png", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(Z, Y, X\) volume"):
        write_mask(tmp_path / "m.nii", np.zeros((4, 4), np.uint8))
    like = ImageData(data=np.zeros((8, 8)), modality="xray", scale=(1.0, 1.0))
    with pytest.raises(ValueError, match="does not match image shape"):
        write_mask(tmp_path / "m.tif", np.zeros((4, 4), np.uint8), like=like)
    assert list(tmp_path.iterdir()) == []
