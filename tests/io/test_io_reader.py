"""napari adapters: get_reader returns None for what it cannot read; write_labels."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from napari_wsseg._reader import get_reader
from napari_wsseg._writer import write_labels
from napari_wsseg.io import ImageReadError

ANAT = f"{data_path}/anatomical.nii"


def test_get_reader_returns_none_for_unsupported(tmp_path):
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "table.csv")) is None
    assert get_reader(str(tmp_path / "missing.nii")) is None
    assert get_reader(str(tmp_path / "empty")) is None
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a slice")
    assert get_reader(str(tmp_path / "notes")) is None
    assert get_reader([str(tmp_path / "table.csv"), ANAT]) is None


def test_reader_returns_image_layer_data():
    reader = get_reader(ANAT)
    assert reader is not None
    [(data, kwargs, kind)] = reader(ANAT)
    assert kind == "image" and data.shape == (25, 41, 33)
    assert kwargs["name"] == "anatomical" and kwargs["scale"] == (2.0, 2.0, 2.0)
    assert kwargs["contrast_limits"] == [-125.0, 350.0]
    assert kwargs["metadata"]["modality"] == "ct"


def test_reader_handles_several_files():
    paths = [ANAT, get_testdata_file("CT_small.dcm", download=False)]
    layers = get_reader(paths)(paths)
    assert [layer[1]["name"] for layer in layers] == ["anatomical", "CT_small"]


def test_reader_callable_raises_clear_error_for_broken_file(tmp_path):
    (tmp_path / "broken.nii").write_bytes(b"\x00" * 400)
    reader = get_reader(str(tmp_path / "broken.nii"))
    assert reader is not None  # the suffix says NIfTI; reading says why not
    with pytest.raises(ImageReadError, match=r"broken\.nii"):
        reader(str(tmp_path / "broken.nii"))


def test_write_labels_keeps_the_source_affine(tmp_path):
    [(data, kwargs, _)] = get_reader(ANAT)(ANAT)
    labels = (data > np.percentile(data, 90)).astype(np.int32)
    meta = {"scale": kwargs["scale"], "metadata": kwargs["metadata"], "name": "mask"}
    [written] = write_labels(str(tmp_path / "mask.nii.gz"), labels, meta)
    saved, source = nib.load(written), nib.load(ANAT)
    np.testing.assert_allclose(saved.affine, source.affine)
    src = np.asanyarray(source.dataobj)
    np.testing.assert_array_equal(
        np.asanyarray(saved.dataobj), (src > np.percentile(data, 90)).astype(np.uint8)
    )
    [png] = write_labels(str(tmp_path / "m.png"), np.eye(5, dtype=np.int64), {})
    assert png.endswith("m.png")
