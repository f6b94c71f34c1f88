"""Headless side of the browser's PACS dialog: search, retrieve (a generator that
yields progress, for ``create_worker``), store a case's accepted mask, label parsing.

Each function opens what it needs (the PACS from the user's config, the study at
``root``) in the worker's thread and closes it, so nothing is shared with Qt.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict
from pathlib import Path
from typing import Any

PACS_COLUMNS = ["patient", "accession", "date", "modality", "series", "images", "description"]
MODALITY_CHOICES = ["any", "CT", "MG", "CR", "DX", "MR", "SM", "SEG"]


def _pacs(server: str | None = None):
    from napari_wsseg.io.pacs import Pacs, load_config

    return Pacs(load_config(server))


def server_names() -> tuple[list[str], str]:
    """The servers in the user's config and a note (where the config is, or why none)."""
    import yaml

    from napari_wsseg.io.pacs import config_path

    path = config_path()
    if not path.is_file():
        return [], f"no PACS config at {path}; see docs/io.md 'From PACS and back'"
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        return [], f"{path}: not valid YAML ({exc})"
    servers = list((doc.get("pacs") or {}).get("servers") or {})
    default = (doc.get("pacs") or {}).get("default")
    if default in servers:
        servers.remove(default)
        servers.insert(0, default)
    return servers, f"servers from {path}"


def search(server: str | None, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Worker: the series matching ``filters`` (patient, accession, modality, date)."""
    clean = {k: v.strip() for k, v in filters.items() if v and v.strip() and v != "any"}
    hits = _pacs(server).search(
        patient_id=clean.get("patient"),
        accession=clean.get("accession"),
        modality=clean.get("modality"),
        date=clean.get("date"),
    )
    return [asdict(h) for h in hits]


def hit_cells(hit: dict[str, Any]) -> list:
    """One row of the results table (:data:`PACS_COLUMNS`)."""
    date = hit["study_date"]
    shown = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date
    n = hit["n_instances"]
    return [
        hit["patient_id"],
        hit["accession"],
        shown,
        hit["modality"],
        hit["series_number"] if hit["series_number"] is not None else "",
        n if n is not None else "",
        hit["description"],
    ]


def parse_labels(text: str) -> dict[str, float]:
    """'pdac=1, cardiomegaly' -> {'pdac': 1.0, 'cardiomegaly': 1.0}; ValueError if malformed."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise ValueError(f"label {part!r}: expected name or name=0/1") from None
    return out


def retrieve(
    root: str | Path,
    server: str | None,
    hits: list[dict[str, Any]],
    labels: dict[str, float],
    labels_csv: str | None = None,
) -> Generator[tuple[int, int, str], None, list[int]]:
    """Worker generator: retrieve each series into the study at ``root``; yields
    (instances done, instances total, series name) and returns the new image ids."""
    from napari_wsseg.io.pacs import SeriesHit
    from napari_wsseg.study.pacs_import import (
        MODALITY_OF,
        iter_retrieve_into_study,
        labels_for_hit,
        labels_from_csv,
    )
    from napari_wsseg.study.store import Study

    pacs = _pacs(server)
    ids = []
    with Study.open(root) as study:
        for raw in hits:
            hit = SeriesHit(**raw)
            given = dict(labels)
            if labels_csv:
                table = labels_from_csv(labels_csv, MODALITY_OF.get(hit.modality.upper(), "ct"))
                given = {**labels_for_hit(table, hit), **given}
            name = f"{hit.patient_id} {hit.modality} series {hit.series_number}"
            steps = iter_retrieve_into_study(study, pacs, hit, None, given)
            while True:
                try:
                    done, total = next(steps)
                except StopIteration as stop:
                    ids.append(int(stop.value))
                    break
                yield done, total, name
    return ids


def store_accepted(root: str | Path, server: str | None, image_id: int) -> str:
    """Worker: send the newest accepted mask of ``image_id`` to the PACS as DICOM SEG."""
    from napari_wsseg.study.pacs_import import store_seg
    from napari_wsseg.study.store import Study

    with Study.open(root) as study:
        version = study.latest_accepted_mask(image_id)
        if version is None:
            raise ValueError(f"image {image_id} has no accepted mask version to send")
        uid = store_seg(study, _pacs(server), version.id)
    return f"sent mask v{version.version} of image {image_id} as DICOM SEG {uid}"
