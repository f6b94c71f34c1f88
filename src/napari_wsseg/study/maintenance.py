"""Study helpers kept out of ``store.py``: mask files, CSV import, snapshots."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.io.base import InputError
from napari_wsseg.study.importing import add_image, inspect
from napari_wsseg.study.records import ImageRecord, utc_now
from napari_wsseg.study.snapshot import Snapshot, SnapshotItem
from napari_wsseg.study.vocab import CHEST_FINDINGS, MASK_CLASSES, VOCABULARY, labels_for

if TYPE_CHECKING:
    from napari_wsseg.study.catalog import Catalog

_VERSION_FILE = re.compile(r"^v(\d+)\.")
_NOT_LABELS = ("path", "modality", "series")


# -- mask files ---------------------------------------------------------------------
def read_like(path: Path) -> Any:
    """The ``ImageData`` a volume mask takes its geometry from."""
    from napari_wsseg.io import read_image

    return read_image(path, "ct")


def check_mask_array(rec: ImageRecord, array: Any) -> np.ndarray:
    """Validate a mask's shape/values against its image; returns an integer array.

    X-ray masks are (10, Y, X) binary stacks; others integer label images of the
    image's shape. Slide masks may also be at a power-of-2 downsampled level.
    """
    from napari_wsseg.io.masks import as_label_array

    arr = as_label_array(array, f"mask of image {rec.id}")
    where = f"mask of image {rec.id} ({rec.relpath})"
    shape = tuple(rec.meta.get("shape", ()))
    want = (len(CHEST_FINDINGS), *shape) if rec.modality == "xray" else shape
    ok = not shape or arr.shape == want
    if not ok and rec.modality == "slide" and arr.ndim == 2:
        ok = any(
            all(abs(a - s / 2**k) < 1 for a, s in zip(arr.shape, shape)) for k in range(1, 10)
        )
    if not ok:
        raise InputError(where, f"has shape {arr.shape}; expected {want}")
    hi = int(arr.max(initial=0))
    if rec.modality == "xray" and hi > 1:
        raise InputError(where, f"an X-ray mask must be binary per channel (found label {hi})")
    classes = MASK_CLASSES.get(rec.modality, {})
    if rec.modality != "xray" and hi > max(classes, default=0):
        names = ", ".join(f"{k} = {v}" for k, v in sorted(classes.items()))
        raise InputError(
            where, f"holds label {hi}, but a {rec.modality} mask holds 0 = background, {names}"
        )
    return arr


def write_mask_file(path: Path, arr: np.ndarray, like: Any) -> None:
    """Write a mask file atomically (temp + fsync + rename) through ``io.write_mask``."""
    from napari_wsseg.io import write_mask

    write_mask(path, arr, like=like)


def read_mask_file(path: Path) -> np.ndarray:
    """Read a mask file through ``io.read_mask``."""
    from napari_wsseg.io import read_mask

    return read_mask(path)


def max_file_version(folder: Path) -> int:
    """Largest k among ``v<k>.*`` files in a mask folder (0 if none)."""
    best = 0
    if folder.is_dir():
        for f in folder.iterdir():
            m = _VERSION_FILE.match(f.name)
            if m:
                best = max(best, int(m.group(1)))
    return best


# -- CSV import ---------------------------------------------------------------------
def _parse_label(cell: str) -> float | None:
    cell = cell.strip()
    if cell == "":
        return None
    return float(cell)


def _parse_series(cell: str, path: Path, where: str) -> str | int | None:
    """A ``series`` cell: empty (the main series), an index, or a SeriesInstanceUID
    that the DICOM folder ``path`` holds (checked from headers only)."""
    from napari_wsseg.io import ImageReadError
    from napari_wsseg.io.dicom_scan import scan_dicom_folder

    cell = cell.strip()
    if not cell:
        return None
    if not path.is_dir():
        raise InputError(where, f"series {cell!r} given for {path}, which is not a folder")
    series: str | int = int(cell) if cell.isdigit() else cell
    try:
        scan_dicom_folder(path).find(series)
    except ImageReadError as exc:
        raise InputError(where, f"{exc}") from None
    return series


def import_csv(
    study: Catalog, csv_path: str | Path, base_dir: str | Path | None = None
) -> list[int]:
    """Import images from a CSV: columns ``path``, ``modality``, optional ``series``
    and one per label name.

    Relative paths are taken from ``base_dir`` (default: the CSV's folder). Empty
    label cells mean "unknown". ``series`` picks a series of a DICOM folder (its
    SeriesInstanceUID or index; empty: the main series). Every row is validated
    before any image is added; a bad row raises ValueError naming the CSV file and
    row number.
    """
    csv_path = Path(csv_path)
    base = Path(base_dir) if base_dir is not None else csv_path.parent
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such CSV file")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = {"path", "modality"} - set(cols)
        if missing:
            raise InputError(csv_path, f"missing column(s) {sorted(missing)}; found {cols}")
        known = {n for names in VOCABULARY.values() for n in names}
        unknown = set(cols) - known - set(_NOT_LABELS)
        if unknown:
            raise InputError(csv_path, f"unknown label column(s) {sorted(unknown)}")
        rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    plan = []
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{csv_path}, row {n}"
        try:
            plan.append(_plan_row(row, cols, base, where))
        except (ValueError, OSError) as exc:
            own = isinstance(exc, InputError) and exc.path == where
            problem = exc.problem if own else str(exc)
            raise InputError(where, f"{problem} (nothing was imported)") from None
    ids = []
    for where, path, modality, labels, series, incoming in plan:
        try:
            ids.append(add_image(study, path, modality, labels, True, None, series, incoming))
        except (ValueError, OSError) as exc:
            raise InputError(where, f"{exc} (imported {len(ids)} row(s) before it)") from exc
    return ids


def _plan_row(row: dict[str, str], cols: list[str], base: Path, where: str) -> tuple:
    """One CSV row checked in full (labels, path, series, and the image read once)."""
    modality = row["modality"].strip()
    vocab = labels_for(modality)
    if not row["path"].strip():
        raise InputError(where, "empty path")
    path = Path(row["path"].strip())
    path = path if path.is_absolute() else base / path
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system, a bad character...
        raise InputError(where, f"image path {str(path)[:80]}... ({exc.strerror})") from None
    if not exists:
        raise InputError(where, f"image file {path} does not exist")
    series = _parse_series(row.get("series", ""), path, where)
    labels: dict[str, float] = {}
    for name in cols:
        if name in _NOT_LABELS:
            continue
        try:
            value = _parse_label(row.get(name, ""))
        except ValueError:
            raise InputError(where, f"label {name!r} must be 0/1, got {row[name]!r}") from None
        if value is None:
            continue
        if name not in vocab:
            raise InputError(where, f"label {name!r} does not belong to {modality} {vocab}")
        if not 0.0 <= value <= 1.0:
            raise InputError(where, f"label {name!r} must be in [0, 1], got {value}")
        labels[name] = value
    incoming = inspect(path, modality, series)  # reads the image: a broken file fails here
    return where, path, modality, labels, series, incoming


# -- snapshots ----------------------------------------------------------------------
def make_snapshot(
    study: Catalog, modality: str | None, val_fraction: float, seed: int
) -> Snapshot:
    """Items with labels and masks; validation split stratified by modality and by
    whether the image has any positive label, drawn with ``seed``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    records = study.images(modality)
    groups: dict[tuple[str, bool], list[int]] = {}
    for rec in records:
        key = (rec.modality, any(v > 0 for v in rec.labels.values()))
        groups.setdefault(key, []).append(rec.id)
    val: set[int] = set()
    rng = np.random.default_rng(seed)
    for key in sorted(groups):
        ids = sorted(groups[key])
        order = rng.permutation(len(ids))
        val.update(ids[i] for i in order[: int(round(len(ids) * val_fraction))])
    items = []
    for rec in records:
        acc = study.latest_accepted_mask(rec.id)
        ref = study.reference_mask(rec.id)
        items.append(
            SnapshotItem(
                image_id=rec.id,
                path=str(rec.path),
                modality=rec.modality,
                labels=dict(rec.labels),
                mask=str(acc.path) if acc else None,
                mask_version=acc.id if acc else None,
                reference_mask=str(ref.path) if ref else None,
                split="val" if rec.id in val else "train",
                meta=dict(rec.meta),
            )
        )
    return Snapshot(study=str(study.root), items=items, created=utc_now())
