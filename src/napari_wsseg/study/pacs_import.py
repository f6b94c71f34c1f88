"""Series from a PACS into a study, and accepted masks back to it as DICOM SEG.

A retrieval downloads the series into a temporary folder outside the study (one
instance at a time), then imports it with :meth:`Study.add_image`, whose staged
copy is renamed into ``images/`` only when complete and registered in the same
transaction. A retrieval that fails (the server dies, the disk fills) removes the
download and leaves the study as it was; running it again completes it. The
study records the series' DICOM UIDs and the server's config name, never its
URL or credentials.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_wsseg.io.pacs import Pacs, SeriesHit
    from napari_wsseg.study.store import Study

# DICOM modality -> study modality for series retrieved without one given.
MODALITY_OF = {"CT": "ct", "MR": "ct", "MG": "mammo", "CR": "xray", "DX": "xray", "SM": "slide"}


def _folder_name(hit: SeriesHit) -> str:
    raw = f"{hit.patient_id or 'anon'}-{hit.modality or 'OT'}-S{hit.series_number or 0}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._") or "series"


def iter_retrieve_into_study(
    study: Study,
    pacs: Pacs,
    hit: SeriesHit,
    modality: str | None = None,
    labels: dict[str, Any] | None = None,
) -> Generator[tuple[int, int], None, int]:
    """Retrieve the series ``hit`` into ``study`` with its labels, yielding (instances
    done, total); returns the new image id (``StopIteration.value``).

    ``modality`` defaults from the series' DICOM Modality (CT -> ct, CR/DX -> xray,
    MG -> mammo). A series already in the study (same SeriesInstanceUID) is refused.
    """
    from napari_wsseg.study.dicom_seg import dicom_series_uid

    modality = modality or MODALITY_OF.get(hit.modality.upper())
    if modality is None:
        raise ValueError(f"series {hit.series_uid}: modality {hit.modality!r}; pass one")
    taken = [r.id for r in study.images() if dicom_series_uid(r) == hit.series_uid]
    if taken:
        raise ValueError(f"series {hit.series_uid} is already in the study (image {taken[0]})")
    meta = {
        "pacs": {
            "server": pacs.config.name,
            "study_uid": hit.study_uid,
            "series_uid": hit.series_uid,
            "accession": hit.accession,
        }
    }
    with tempfile.TemporaryDirectory(prefix="wsseg-pacs-") as tmp:
        folder = Path(tmp) / _folder_name(hit)
        yield from pacs.iter_retrieve(hit.study_uid, hit.series_uid, folder)
        return study.add_image(folder, modality, labels, meta=meta)


def retrieve_into_study(
    study: Study,
    pacs: Pacs,
    hit: SeriesHit,
    modality: str | None = None,
    labels: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """:func:`iter_retrieve_into_study` to the end, calling ``progress(done, total)``;
    returns the new image id."""
    steps = iter_retrieve_into_study(study, pacs, hit, modality, labels)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return int(stop.value)
        if progress is not None:
            progress(done, total)


def store_seg(study: Study, pacs: Pacs, version_id: int, folder: str | Path | None = None) -> str:
    """Export a mask version as DICOM SEG and send it to the PACS (STOW-RS); its SOP UID."""
    from napari_wsseg.study.dicom_seg import export_seg

    with tempfile.TemporaryDirectory(prefix="wsseg-seg-") as tmp:
        out = Path(folder or tmp) / f"seg-v{version_id}.dcm"
        export_seg(study, version_id, out)
        return pacs.store([out])[0]


def labels_from_csv(path: str | Path, modality: str) -> dict[str, dict[str, float]]:
    """Image-level labels per series from a CSV: a ``series_uid`` or ``accession``
    column, then one column per label name of ``modality`` (0/1, empty = unknown).
    Keys are ``series:<uid>`` or ``accession:<number>``."""
    from napari_wsseg.study.records import check_labels

    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        key = (
            "series_uid" if "series_uid" in cols else "accession" if "accession" in cols else None
        )
        if key is None:
            raise ValueError(f"{path}: needs a 'series_uid' or 'accession' column")
        out = {}
        for n, row in enumerate(reader, start=2):
            values = {k: v for k, v in row.items() if k != key and v not in ("", None)}
            where = f"{path} line {n}"
            out[f"{key.split('_')[0]}:{row[key]}"] = check_labels(modality, values, where)
    return out


def labels_for_hit(table: dict[str, dict[str, float]], hit: SeriesHit) -> dict[str, float]:
    """The labels :func:`labels_from_csv` gives a series (by UID, else accession)."""
    return table.get(f"series:{hit.series_uid}") or table.get(f"accession:{hit.accession}") or {}
