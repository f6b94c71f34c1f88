"""A study's mask versions as DICOM SEG, and DICOM SEGs back as mask versions.

:func:`export_seg` writes one mask version of a DICOM image (a CT series folder,
or a single MG / CR / DX file) as a SEG referencing that image's source
instances, with the version's provenance (see :mod:`napari_wsseg.io.seg`).
:func:`import_seg` finds the study image whose series the SEG references and
stores the SEG's pixels as a new mask version of it, with the SEG's author,
source and model version.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom

from napari_wsseg.study.records import ImageRecord
from napari_wsseg.study.vocab import MASK_CLASSES

if TYPE_CHECKING:
    from napari_wsseg.io import ImageData
    from napari_wsseg.study.store import Study


def _read_dicom_image(rec: ImageRecord) -> ImageData:
    from napari_wsseg.io import read_image

    image = read_image(rec.path, rec.modality)
    if image.meta.get("format") != "dicom":
        raise ValueError(
            f"image {rec.id} ({rec.relpath}) is not a DICOM image: a DICOM SEG needs DICOM "
            "source images (import the DICOM series, not a conversion)"
        )
    return image


def export_seg(
    study: Study,
    version_id: int,
    out: str | Path,
    probabilities: Any = None,
    series_number: int = 900,
) -> Path:
    """Write mask version ``version_id`` as a DICOM SEG file ``out``; returns ``out``.

    ``probabilities`` (the map the version was thresholded from, same shape as the
    mask, or (C, ...) per class) writes a FRACTIONAL SEG of it instead, with the
    version's provenance.
    """
    from napari_wsseg.io.seg import SegProvenance, write_seg

    version = study.mask_version(version_id)
    rec = study.image(version.image_id)
    image = _read_dicom_image(rec)
    prov = SegProvenance(
        source=version.source,
        author=version.author,
        created=version.created,
        model_version=version.model_version,
        description=f"wsseg mask v{version.version} ({version.source}) of image {rec.id}",
    )
    classes = MASK_CLASSES[rec.modality]
    stack = rec.modality == "xray"
    if probabilities is not None:
        data = np.asarray(probabilities, dtype=np.float32)
        return write_seg(
            out, image, data, classes, prov, fractional=True, series_number=series_number
        )
    mask = study.load_mask(version_id)
    return write_seg(out, image, mask, classes, prov, stack=stack, series_number=series_number)


def dicom_series_uid(rec: ImageRecord) -> str | None:
    """The SeriesInstanceUID of a study image read from DICOM, None for other formats."""
    series = rec.meta.get("series") or {}
    if series.get("uid"):
        return str(series["uid"])
    if rec.path.is_file():
        try:
            ds = pydicom.dcmread(rec.path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError):
            return None
        return str(ds.get("SeriesInstanceUID", "")) or None
    return None


def find_referenced_image(study: Study, series_uid: str) -> ImageRecord:
    """The study image of series ``series_uid``; KeyError if none, ValueError if several."""
    found = [r for r in study.images() if dicom_series_uid(r) == series_uid]
    if not found:
        raise KeyError(f"no image of series {series_uid} in study {study.root}")
    if len(found) > 1:
        ids = ", ".join(str(r.id) for r in found)
        raise ValueError(f"series {series_uid} is in the study more than once (images {ids})")
    return found[0]


def import_seg(
    study: Study, path: str | Path, image_id: int | None = None, author: str | None = None
) -> int:
    """Store a DICOM SEG as a new mask version of the image it references; returns its id.

    The image is found by the SEG's referenced SeriesInstanceUID (or given as
    ``image_id``); every source instance of the image must be one the SEG refers
    to or is absent from (empty frames). Source, author and model version come from
    the SEG (``author`` overrides); a fractional SEG is stored thresholded at 0.5.
    """
    from napari_wsseg.io import ImageReadError
    from napari_wsseg.io.seg import read_seg, seg_to_mask, source_sop_uids

    path = Path(path)
    first = read_seg(path)
    rec = (
        study.image(image_id)
        if image_id is not None
        else (find_referenced_image(study, first.series_uid))
    )
    image = _read_dicom_image(rec)
    uids = source_sop_uids(image)
    if not set(first.sop_uids) <= set(uids):
        raise ImageReadError(
            path,
            f"references {len(set(first.sop_uids) - set(uids))} instance(s) that image "
            f"{rec.id} ({rec.relpath}) does not hold",
        )
    contents = read_seg(path, uids)
    stack = rec.modality == "xray"
    mask = seg_to_mask(contents, image, MASK_CLASSES[rec.modality], stack=stack)
    prov = contents.provenance
    return study.save_mask(
        rec.id,
        mask,
        prov.source,
        author=prov.author if author is None else author,
        model_version=prov.model_version,
        like=image,
    )
