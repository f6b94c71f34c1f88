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


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, scheme, meaning
    return ds


def make_dicom_wsi(folder: Path, base, tile: int = 128, n_levels: int = 3, mpp: float = 0.5):
    """Write ``base`` (Y, X, 3 uint8) as a DICOM WSI: one TILED_FULL VL Whole Slide
    Microscopy instance per level (downsample 2^k, uncompressed RGB tiles)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(n_levels):
        img = base[:: 2**k, :: 2**k]
        h, w = img.shape[:2]
        ty, tx = -(-h // tile), -(-w // tile)
        tiles = np.zeros((ty * tx, tile, tile, 3), np.uint8)
        for i in range(ty):
            for j in range(tx):
                t = img[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile]
                tiles[i * tx + j, : t.shape[0], : t.shape[1]] = t
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "SM", "Slide^Test", "P-SM"
        ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = (
            "20261101",
            "120000",
            "20261101",
            "120000",
        )
        ds.AcquisitionDateTime = "20261101120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Manufacturer, ds.ManufacturerModelName = "napari-wsseg tests", "generated"
        ds.SoftwareVersions, ds.DeviceSerialNumber = "0", "0"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.Rows = ds.Columns = tile
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.NumberOfFrames = ty * tx
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = w, h
        ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
        spacing = mpp * 2**k / 1000  # mm
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = (
            w * spacing,
            h * spacing,
            0.001,
        )
        measures = Dataset()
        measures.PixelSpacing, measures.SliceThickness = [spacing, spacing], 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = [measures]
        ds.SharedFunctionalGroupsSequence = [shared]
        origin = Dataset()
        origin.XOffsetInSlideCoordinateSystem, origin.YOffsetInSlideCoordinateSystem = 20.0, 40.0
        ds.TotalPixelMatrixOriginSequence = [origin]
        path = Dataset()
        path.OpticalPathIdentifier = "0"
        path.IlluminationTypeCodeSequence = [_code("111744", "DCM", "Brightfield illumination")]
        path.IlluminationColorCodeSequence = [_code("414298005", "SCT", "Full Spectrum")]
        ds.OpticalPathSequence = [path]
        ds.ContainerIdentifier, ds.SpecimenDescriptionSequence = "SLIDE-1", []
        ds.VolumetricProperties, ds.FocusMethod, ds.ExtendedDepthOfField = "VOLUME", "AUTO", "NO"
        ds.BurnedInAnnotation, ds.LossyImageCompression, ds.SpecimenLabelInImage = "NO", "00", "NO"
        ds.PixelData = tiles.tobytes()
        ds.save_as(folder / f"level{k}.dcm", enforce_file_format=True)
