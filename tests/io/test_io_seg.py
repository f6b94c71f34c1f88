"""DICOM SEG round trips: mask -> SEG -> highdicom read back; pixels and geometry."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from dicom_factory import make_projection
from test_io_dicom_series import STEP, _make_series

from napari_wsseg.io import ImageReadError, read_image
from napari_wsseg.io.seg import (
    SegProvenance,
    read_seg,
    seg_to_mask,
    source_files,
    source_sop_uids,
    write_seg,
)
from napari_wsseg.study.vocab import MASK_CLASSES

PROV = SegProvenance("corrected", "Doe^Jane", "2026-12-01T10:20:30.250000Z", "iagnet-v7")
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
# CT_small says 5 mm; the generated slices are STEP apart
CONSISTENT = {"SpacingBetweenSlices": STEP, "SliceThickness": STEP}


def _dciodvfy_errors(path) -> list[str]:
    """Error lines of dicom3tools' validator ([] where it is not installed)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return []
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")]


def _ct_mask(shape) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[1:-1, 20:50, 30:90] = 1
    mask[-1, 70:100, 10:20] = 1  # asymmetric, so a flipped axis would show
    return mask


@pytest.mark.parametrize("iop", [None, SAGITTAL], ids=["axial", "sagittal"])
def test_ct_mask_round_trips_with_the_series_geometry(tmp_path, iop):
    _make_series(tmp_path / "ct", list(range(6)), iop=iop, **CONSISTENT)
    image = read_image(tmp_path / "ct")
    mask = _ct_mask(image.spatial_shape)
    out = write_seg(tmp_path / "seg.dcm", image, mask, MASK_CLASSES["ct"], PROV)

    seg = hd.seg.segread(out)  # highdicom's own reader and checks
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in source_files(image)]
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert int(seg.NumberOfFrames) == len(sources)
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in sources[0].PixelSpacing]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(STEP)
    iop_seg = shared.PlaneOrientationSequence[0].ImageOrientationPatient
    np.testing.assert_allclose([float(v) for v in iop_seg], sources[0].ImageOrientationPatient)
    by_uid = {s.SOPInstanceUID: s for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:  # each frame sits on its slice
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        src = by_uid.pop(ref.ReferencedSOPInstanceUID)
        ipp = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose([float(v) for v in ipp], src.ImagePositionPatient, atol=1e-4)
    assert by_uid == {}

    # same pixels per source slice, read with highdicom directly
    frames = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources])
    back = read_seg(out, source_sop_uids(image))
    np.testing.assert_array_equal(back.frames, frames)
    np.testing.assert_array_equal(seg_to_mask(back, image, MASK_CLASSES["ct"]), mask)
    assert frames.sum() == mask.sum()
    assert _dciodvfy_errors(out) == []


def test_provenance_is_written_where_dicom_keeps_it(tmp_path):
    _make_series(tmp_path / "ct", list(range(3)))
    image = read_image(tmp_path / "ct")
    out = write_seg(tmp_path / "s.dcm", image, _ct_mask(image.spatial_shape), {1: "pdac"}, PROV)
    ds = pydicom.dcmread(out)
    assert str(ds.ContentCreatorName) == "Doe^Jane"
    assert (ds.ContentDate, ds.ContentTime) == ("20261201", "102030.250000")
    assert ds.ContentLabel == "CORRECTED" and ds.SegmentationType == "BINARY"
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "pdac" and segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "iagnet-v7"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # neoplasm
    assert segment.AnatomicRegionSequence[0].CodeMeaning == "Pancreas"
    assert read_seg(out).provenance == SegProvenance(
        "corrected", "Doe^Jane", PROV.created, "iagnet-v7", ds.ContentDescription
    )


def test_xray_findings_stack_round_trips_on_a_cr_without_frame_of_reference(tmp_path):
    make_projection(tmp_path / "chest.dcm", "CR")
    image = read_image(tmp_path / "chest.dcm")
    mask = np.zeros((10, *image.spatial_shape), np.uint8)
    mask[2, 10:20, 10:30] = 1
    mask[7, 5:40, 5:9] = 1
    mask[7, 12:14, 12:14] = 1  # findings may overlap
    prov = SegProvenance("expert", "Roe^Rick", "2026-12-01T10:20:30Z")
    out = write_seg(tmp_path / "s.dcm", image, mask, MASK_CLASSES["xray"], prov, stack=True)
    ds = pydicom.dcmread(out)
    assert (
        "FrameOfReferenceUID" not in ds and ds.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    )
    assert [s.SegmentLabel for s in ds.SegmentSequence] == list(MASK_CLASSES["xray"].values())
    back = read_seg(out)
    assert back.frames.shape == (1, 64, 64, 10)
    np.testing.assert_array_equal(seg_to_mask(back, image, MASK_CLASSES["xray"], stack=True), mask)
    assert _dciodvfy_errors(out) == []


def test_mammogram_label_map_with_two_classes_round_trips(tmp_path):
    make_projection(tmp_path / "mg.dcm", "MG")
    image = read_image(tmp_path / "mg.dcm")
    mask = np.zeros(image.spatial_shape, np.uint8)
    mask[5:15, 5:15], mask[30:50, 40:44] = 1, 2
    out = write_seg(tmp_path / "s.dcm", image, mask, MASK_CLASSES["mammo"], PROV)
    np.testing.assert_array_equal(seg_to_mask(read_seg(out), image, MASK_CLASSES["mammo"]), mask)


def test_fractional_probability_map_round_trips_to_8_bits(tmp_path):
    _make_series(tmp_path / "ct", list(range(4)), iop=SAGITTAL)
    image = read_image(tmp_path / "ct")
    prob = np.random.default_rng(0).random(image.spatial_shape).astype(np.float32)
    prov = SegProvenance("predicted", "", "2026-12-01T10:20:30Z", "iagnet-v7")
    out = write_seg(tmp_path / "p.dcm", image, prob, {1: "pdac"}, prov, fractional=True)
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.SegmentationType == "FRACTIONAL" and ds.SegmentationFractionalType == "PROBABILITY"
    back = read_seg(out, source_sop_uids(image))
    assert back.fractional and back.provenance.source == "predicted"
    from napari_wsseg.io.seg import _image_of

    np.testing.assert_allclose(_image_of(image, back.frames)[..., 0], prob, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(seg_to_mask(back, image, {1: "pdac"}), prob > 0.5)
    assert _dciodvfy_errors(out) == []


def test_bad_inputs_are_clear_errors(tmp_path):
    _make_series(tmp_path / "ct", list(range(3)))
    image = read_image(tmp_path / "ct")
    with pytest.raises(ValueError, match="does not fit image shape"):
        write_seg(tmp_path / "a.dcm", image, np.zeros((2, 4, 4)), {1: "pdac"}, PROV)
    with pytest.raises(ValueError, match=r"label\(s\) \[3\]"):
        write_seg(tmp_path / "a.dcm", image, np.full(image.spatial_shape, 3), {1: "pdac"}, PROV)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bad = np.full(image.spatial_shape, 2.0)
        write_seg(tmp_path / "a.dcm", image, bad, {1: "pdac"}, PROV, fractional=True)
    assert not (tmp_path / "a.dcm").exists()
    with pytest.raises(ImageReadError, match="not a DICOM Segmentation"):
        read_seg(source_files(image)[0])
    (tmp_path / "t.dcm").write_text("hello")
    with pytest.raises(ImageReadError, match="t.dcm: not a readable DICOM"):
        read_seg(tmp_path / "t.dcm")
    out = write_seg(tmp_path / "s.dcm", image, _ct_mask(image.spatial_shape), {1: "pdac"}, PROV)
    with pytest.raises(ValueError, match=r"segment\(s\) \['pdac'\] are none"):
        seg_to_mask(read_seg(out), image, {1: "tumor"})
