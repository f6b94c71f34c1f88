"""Rows of the study catalog as dataclasses, the SQL schema, and small helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.io.base import InputError
from napari_wsseg.study.vocab import labels_for

SCHEMA_VERSION = 1
MASK_SOURCES = ("expert", "predicted", "corrected", "reference")
ACCEPTED_SOURCES = ("expert", "corrected")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relpath TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}',
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    image_id INTEGER NOT NULL REFERENCES images(id),
    name TEXT NOT NULL,
    value REAL NOT NULL CHECK (value >= 0 AND value <= 1),
    updated TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE TABLE IF NOT EXISTS masks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    version INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN {MASK_SOURCES!r}),
    author TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    parent INTEGER REFERENCES masks(id),
    relpath TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    model_version TEXT,
    UNIQUE (image_id, version)
);
CREATE INDEX IF NOT EXISTS masks_by_image ON masks(image_id, version);
CREATE TRIGGER IF NOT EXISTS masks_immutable BEFORE UPDATE ON masks
BEGIN SELECT RAISE(ABORT, 'mask versions are immutable'); END;
CREATE TRIGGER IF NOT EXISTS masks_undeletable BEFORE DELETE ON masks
BEGIN SELECT RAISE(ABORT, 'mask versions are never deleted'); END;
"""


@dataclass
class ImageRecord:
    """One image of a study.

    ``path`` is absolute, ``relpath`` relative to the study root. ``mask_status`` is
    the source of the newest accepted version ('expert' or 'corrected') when one
    exists, else 'predicted' when a predicted one does, else 'none' (reference masks
    are evaluation-only and do not count).
    """

    id: int
    path: Path
    relpath: str
    modality: str
    sha256: str
    labels: dict[str, float] = field(default_factory=dict)
    n_mask_versions: int = 0
    mask_status: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class MaskVersion:
    """One immutable mask version; ``version`` is k in ``masks/<image_id>/v<k>.<ext>``."""

    id: int
    image_id: int
    version: int
    source: str
    author: str
    created: str
    parent: int | None
    path: Path
    model_version: str | None = None
    sha256: str = ""

    @property
    def accepted(self) -> bool:
        """True for versions a human accepted (expert or corrected)."""
        return self.source in ACCEPTED_SOURCES


def utc_now() -> str:
    """Current UTC time, ISO 8601 with seconds precision and a 'Z'."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (sorted names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode())
            h.update(sha256_of(f).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mask_suffix(modality: str) -> str:
    """File suffix of a modality's mask versions: NIfTI for CT, TIFF otherwise."""
    return ".nii.gz" if modality == "ct" else ".tif"


def check_labels(modality: str, labels: dict[str, Any], where: Any) -> dict[str, Any]:
    """Validate label names against the modality vocabulary and values in [0, 1]."""
    vocab = labels_for(modality)
    out: dict[str, Any] = {}
    for name, value in labels.items():
        if name not in vocab:
            raise ValueError(
                f"{where}: unknown label {name!r} for {modality}; expected some of {vocab}"
            )
        if value is None:
            out[name] = None
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: label {name!r} must be 0/1, got {value!r}") from None
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{where}: label {name!r} must be in [0, 1], got {value!r}")
        out[name] = v
    return out


def as_image_id(value: Any, where: Any = "study", what: str = "image id") -> int:
    """An image id as an ``int``: ints and numpy integers pass; ``17.0``, ``True``,
    ``"17"`` are refused (they would name folders ``masks/17.0/``, ``masks/True/``)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise InputError(
            where, f"{what} must be an integer, got {value!r} ({type(value).__name__})"
        )
    return int(value)


def json_default(obj: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, tuples and paths in meta."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"meta value {obj!r} is not JSON serialisable")
