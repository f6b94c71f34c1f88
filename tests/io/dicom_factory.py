"""Generated DICOM files for interop tests: projection radiographs (CR, MG) from
pydicom's real MR_small pixels, with their own UIDs and no frame of reference."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
_VOLUME_TAGS = (
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceLocation",
    "SliceThickness",
    "PixelSpacing",
    "PositionReferenceIndicator",
)


def make_projection(path: Path, modality: str = "CR", **tags) -> pydicom.Dataset:
    """Write a 64 x 64 MONOCHROME2 ``modality`` image (CR / MG / DX) at ``path``: a
    new study and series, ImagerPixelSpacing 0.2 mm, PatientOrientation set; ``tags``
    are set last (e.g. ``PatientID="P1"``)."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    for key in _VOLUME_TAGS:
        if key in ds:
            delattr(ds, key)
    ds.Modality = modality
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.PatientOrientation = ["L", "F"]
    ds.SeriesNumber = 1
    for key, value in tags.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return ds
