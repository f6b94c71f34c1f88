"""DICOM Segmentation (SEG) out and in, through highdicom.

A mask version becomes a SEG that references its source images: every slice of a
CT series (one frame per source slice, in the series' position order, geometry
copied from the slices: frame of reference, plane positions, orientation,
spacing) or the single MG / CR / DX image. Each mask class is a segment coded by
:mod:`.seg_codes`; the provenance goes where DICOM keeps it: the author in
ContentCreatorName, the time in ContentDate / ContentTime, the study's source
('expert', 'corrected', 'predicted', 'reference') in ContentLabel and as the
segment algorithm type (MANUAL, SEMIAUTOMATIC, AUTOMATIC), the model version in
the segmentation algorithm identification.

**Binary and fractional.** Labels are BINARY SEG. Probability maps are FRACTIONAL
SEG of type PROBABILITY (8-bit, steps of 1/255), not a Parametric Map: a
probability of a segment is what a fractional SEG is defined for, it keeps the
same segment codes and source references as the binary one, highdicom reads both
the same way, and viewers that show SEG (OHIF, 3D Slicer) show it as an overlay;
a Parametric Map is for quantities with real-world units and carries no segment
semantics.

Volumes come and go in the readers' (Z, Y, X) LPS order: the reorientation is
undone with the source affine (``ImageData.meta['affine']``) so frame ``k`` is
source slice ``k``. No Qt, napari or torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from .atomic import atomic_write
from .base import ImageData, ImageReadError
from .nifti import to_lps_zyx, to_source_orientation
from .seg_codes import segment_codes

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
ALGORITHM_TYPE = {
    "expert": "MANUAL",
    "reference": "MANUAL",
    "corrected": "SEMIAUTOMATIC",
    "predicted": "AUTOMATIC",
}
SOURCE_OF_TYPE = {"MANUAL": "expert", "SEMIAUTOMATIC": "corrected", "AUTOMATIC": "predicted"}


@dataclass
class SegProvenance:
    """Who made a mask, when, how: what a SEG records of a mask version."""

    source: str
    author: str = ""
    created: str = ""  # ISO 8601 UTC, as study.records.utc_now writes it
    model_version: str | None = None
    description: str = ""


@dataclass
class SegContents:
    """A SEG read back: frames per referenced source instance and its metadata.

    ``frames`` is (n_sources, rows, columns, n_segments): uint8 0/1 for BINARY,
    float32 in [0, 1] for FRACTIONAL, in the order of ``sop_uids``.
    """

    path: Path
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    frames: np.ndarray
    segments: dict[int, str]
    fractional: bool
    provenance: SegProvenance


def _software_version() -> str:
    try:
        return version("napari-wsseg")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def source_files(image: ImageData) -> list[Path]:
    """The DICOM files an image was read from, in frame order (CT: by position)."""
    meta = image.meta
    if meta.get("format") != "dicom":
        raise ValueError(
            f"{meta.get('source_path', 'image')}: not read from DICOM "
            f"({meta.get('format', 'unknown format')}); a DICOM SEG must reference "
            "DICOM source images"
        )
    src = Path(meta["source_path"])
    if meta.get("files"):
        return [src / rel for rel in meta["files"]]
    return [src]


def _frames_of(image: ImageData, array: np.ndarray) -> np.ndarray:
    """A (Z, Y, X[, S]) LPS volume or (Y, X[, S]) image -> (frames, rows, columns[, S])."""
    if image.ndim == 2:
        return array[None]
    affine = image.meta.get("affine")
    if affine is None:
        raise ValueError(f"{image.meta.get('source_path')}: volume without a source affine")
    if array.ndim == 4:
        return np.stack([_frames_of(image, array[..., s]) for s in range(array.shape[-1])], -1)
    return to_source_orientation(array, affine).transpose(2, 1, 0)


def _image_of(image: ImageData, frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_frames_of`."""
    if image.ndim == 2:
        return frames[0]
    if frames.ndim == 4:
        return np.stack([_image_of(image, frames[..., s]) for s in range(frames.shape[-1])], -1)
    affine = np.asarray(image.meta["affine"], dtype=float)
    return to_lps_zyx(np.ascontiguousarray(frames.transpose(2, 1, 0)), affine)[0]


def _one_hot(mask: np.ndarray, classes: dict[int, str], stack: bool) -> np.ndarray:
    """Label map (or a (C, ...) channel stack) -> binary (..., S) for S classes."""
    numbers = sorted(classes)
    if stack:
        if mask.shape[0] != len(numbers):
            raise ValueError(f"mask stack has {mask.shape[0]} channels, expected {len(numbers)}")
        return np.moveaxis(mask > 0, 0, -1).astype(np.uint8)
    unknown = sorted(set(np.unique(mask).tolist()) - {0, *numbers})
    if unknown:
        raise ValueError(f"mask holds label(s) {unknown} outside the classes {classes}")
    return np.stack([mask == n for n in numbers], -1).astype(np.uint8)


def _dicom_datetime(iso: str) -> tuple[str, str] | None:
    """'2026-12-01T23:04:55.123Z' -> ('20261201', '230455.123')."""
    if len(iso) < 19:
        return None
    date, _, time = iso.rstrip("Z").partition("T")
    return date.replace("-", ""), time.replace(":", "")


def _person_name(author: str) -> str | None:
    """A study author as a DICOM person name (a bare name is one component: 'x^')."""
    if not author:
        return None
    return author if "^" in author else f"{author}^"


def _segment_descriptions(classes: dict[int, str], prov: SegProvenance) -> list[Any]:
    algo_type = ALGORITHM_TYPE.get(prov.source)
    if algo_type is None:
        raise ValueError(f"mask source must be one of {sorted(ALGORITHM_TYPE)}, got {prov.source}")
    ident = None
    if algo_type != "MANUAL":
        ident = hd.AlgorithmIdentificationSequence(
            name="napari-wsseg",
            family=codes.cid7162.ArtificialIntelligence,
            version=prov.model_version or "unknown",
        )
    out = []
    for i, seg in enumerate(segment_codes(classes), start=1):
        out.append(
            hd.seg.SegmentDescription(
                segment_number=i,
                segment_label=seg.label,
                segmented_property_category=seg.category,
                segmented_property_type=seg.type,
                algorithm_type=algo_type,
                algorithm_identification=ident,
                anatomic_regions=[seg.region] if seg.region is not None else None,
                tracking_id=seg.label,
                tracking_uid=hd.UID(),
            )
        )
    return out


def write_seg(
    out: str | Path,
    image: ImageData,
    mask: Any,
    classes: dict[int, str],
    provenance: SegProvenance,
    *,
    fractional: bool = False,
    stack: bool = False,
    series_number: int = 900,
) -> Path:
    """Write ``mask`` of ``image`` (read from DICOM) as a DICOM SEG at ``out``, atomically.

    ``mask`` is in the reader's layout: a label map whose values are the keys of
    ``classes``, or with ``stack`` a (C, ...) stack of one binary channel per class
    (X-ray findings). With ``fractional`` it holds probabilities in [0, 1] (one
    class: the image's shape; several: (C, ...)). Raises ValueError naming the
    file for shapes that do not match the image or labels outside ``classes``.
    """
    out = Path(out)
    files = source_files(image)
    arr = np.asarray(mask)
    shape = tuple(image.spatial_shape)
    several = stack or (fractional and len(classes) > 1)
    got = arr.shape[1:] if several else arr.shape
    if tuple(got) != shape:
        raise ValueError(f"{out}: mask shape {arr.shape} does not fit image shape {shape}")
    if fractional:
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{out}: a probability map must lie in [0, 1]")
        per_class = np.moveaxis(arr, 0, -1) if several else arr[..., None]
        pixels = _frames_of(image, per_class.astype(np.float32))
    else:
        pixels = _frames_of(image, _one_hot(arr, classes, stack))
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if len(sources) != pixels.shape[0]:
        raise ValueError(f"{out}: {pixels.shape[0]} frames for {len(sources)} source files")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in sources):
        raise ValueError(f"{files[0]}: multi-frame source images are not supported for SEG")
    name = f"wsseg {provenance.source}"
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=_segment_descriptions(classes, provenance),
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="napari-wsseg",
        manufacturer_model_name="napari-wsseg",
        software_versions=_software_version(),
        device_serial_number="none",
        content_description=(provenance.description or name)[:64],
        content_creator_name=_person_name(provenance.author),
        content_label=provenance.source.upper(),
        series_description=f"{name} mask"[:64],
        omit_empty_frames=False,
    )
    if "FrameOfReferenceUID" not in sources[0]:  # projection images: Type 2C then
        seg.PatientOrientation = sources[0].get("PatientOrientation", "")
    when = _dicom_datetime(provenance.created)
    if when is not None:
        seg.ContentDate, seg.ContentTime = when
    atomic_write(out, lambda p: seg.save_as(p))
    return out


def _provenance(seg: Any) -> SegProvenance:
    first = seg.SegmentSequence[0]
    label = str(seg.get("ContentLabel", "")).lower()
    source = label if label in ALGORITHM_TYPE else SOURCE_OF_TYPE[first.SegmentAlgorithmType]
    model = None
    if "SegmentationAlgorithmIdentificationSequence" in first:
        model = str(first.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion)
    date, time = str(seg.get("ContentDate", "")), str(seg.get("ContentTime", ""))
    created = ""
    if len(date) == 8:
        t = time.split(".")[0].ljust(6, "0")
        frac = time.partition(".")[2]
        created = f"{date[:4]}-{date[4:6]}-{date[6:]}T{t[:2]}:{t[2:4]}:{t[4:6]}"
        created += f".{frac}Z" if frac else "Z"
    return SegProvenance(
        source=source,
        author=str(seg.get("ContentCreatorName", "") or "").rstrip("^"),
        created=created,
        model_version=model,
        description=str(seg.get("ContentDescription", "") or ""),
    )


def read_seg(path: str | Path, sop_uids: list[str] | None = None) -> SegContents:
    """Read a DICOM SEG; ``sop_uids`` orders the frames (default: as referenced).

    Raises :class:`ImageReadError` naming the file when it is not a SEG or
    references no source images.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, EOFError) as exc:
        raise ImageReadError(path, f"not a readable DICOM file ({exc})") from exc
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise ImageReadError(path, f"not a DICOM Segmentation (SOP class {ds.get('SOPClassUID')})")
    try:
        seg = hd.seg.Segmentation.from_dataset(ds)
    except (ValueError, AttributeError, KeyError) as exc:
        raise ImageReadError(path, f"invalid DICOM Segmentation ({exc})") from exc
    refs = seg.get_source_image_uids()
    if not refs:
        raise ImageReadError(path, "the segmentation references no source images")
    uids = list(sop_uids) if sop_uids is not None else [r[2] for r in refs]
    fractional = seg.segmentation_type.value == "FRACTIONAL"
    frames = seg.get_pixels_by_source_instance(
        uids, dtype=np.float32 if fractional else np.uint8, rescale_fractional=True
    )
    segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    return SegContents(
        path=path,
        sop_instance_uid=str(seg.SOPInstanceUID),
        study_uid=str(seg.StudyInstanceUID),
        series_uid=str(refs[0][1]),
        sop_uids=uids,
        frames=frames,
        segments=segments,
        fractional=fractional,
        provenance=_provenance(seg),
    )


def source_sop_uids(image: ImageData) -> list[str]:
    """SOPInstanceUIDs of an image's source files, in frame order."""
    return [
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        for f in source_files(image)
    ]


def seg_to_mask(
    contents: SegContents, image: ImageData, classes: dict[int, str], stack: bool = False
) -> np.ndarray:
    """A read SEG (frames in ``image``'s source order) as a mask in the reader's layout.

    Segments are matched to ``classes`` by label; the result is a label map (or with
    ``stack`` a (C, ...) stack). A fractional SEG is thresholded at 0.5. Unknown
    segment labels are an error naming the SEG file.
    """
    by_name = {name: number for number, name in classes.items()}
    unknown = [lab for lab in contents.segments.values() if lab not in by_name]
    if unknown:
        raise ValueError(
            f"{contents.path}: segment(s) {unknown} are none of this task's classes "
            f"{sorted(by_name)}"
        )
    binary = contents.frames > 0.5 if contents.fractional else contents.frames > 0
    per_class = _image_of(image, binary.astype(np.uint8))
    order = sorted(contents.segments)  # frames' last axis follows segment numbers
    if stack:
        out = np.zeros((len(classes), *per_class.shape[:-1]), dtype=np.uint8)
        numbers = sorted(classes)
        for axis, seg_number in enumerate(order):
            out[numbers.index(by_name[contents.segments[seg_number]])] = per_class[..., axis]
        return out
    out = np.zeros(per_class.shape[:-1], dtype=np.uint8)
    for axis, seg_number in enumerate(order):
        out[per_class[..., axis] > 0] = by_name[contents.segments[seg_number]]
    return out
