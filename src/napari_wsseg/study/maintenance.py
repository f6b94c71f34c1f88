"""Study helpers kept out of ``store.py``: mask files, CSV import, snapshots, checks."""

from __future__ import annotations

import csv
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.study.importing import TMP_PREFIX, add_image, leftovers, remove
from napari_wsseg.study.records import ImageRecord, sha256_of, utc_now
from napari_wsseg.study.snapshot import Snapshot, SnapshotItem
from napari_wsseg.study.vocab import CHEST_FINDINGS, VOCABULARY, labels_for

if TYPE_CHECKING:
    from napari_wsseg.study.catalog import Catalog

_VERSION_FILE = re.compile(r"^v(\d+)\.")
_TMP_FILE = re.compile(r"^\..*\.tmp")
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
    shape = tuple(rec.meta.get("shape", ()))
    want = (len(CHEST_FINDINGS), *shape) if rec.modality == "xray" else shape
    ok = not shape or arr.shape == want
    if not ok and rec.modality == "slide" and arr.ndim == 2:
        ok = any(
            all(abs(a - s / 2**k) < 1 for a, s in zip(arr.shape, shape)) for k in range(1, 10)
        )
    if not ok:
        raise ValueError(
            f"mask of image {rec.id} ({rec.relpath}) has shape {arr.shape}; expected {want}"
        )
    if rec.modality == "xray" and arr.max(initial=0) > 1:
        raise ValueError(f"X-ray mask of image {rec.id} must be binary per channel")
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
        raise ValueError(f"{where}: series {cell!r} given for {path}, which is not a folder")
    series: str | int = int(cell) if cell.isdigit() else cell
    try:
        scan_dicom_folder(path).find(series)
    except ImageReadError as exc:
        raise ValueError(f"{where}: {exc}") from None
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
            raise ValueError(f"{csv_path}: missing column(s) {sorted(missing)}; found {cols}")
        known = {n for names in VOCABULARY.values() for n in names}
        unknown = set(cols) - known - set(_NOT_LABELS)
        if unknown:
            raise ValueError(f"{csv_path}: unknown label column(s) {sorted(unknown)}")
        rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    plan = []
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{csv_path}, row {n}"
        modality = row["modality"].strip()
        try:
            vocab = labels_for(modality)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        path = Path(row["path"].strip())
        if not row["path"].strip():
            raise ValueError(f"{where}: empty path")
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise ValueError(f"{where}: image file {path} does not exist")
        series = _parse_series(row.get("series", ""), path, where)
        labels: dict[str, float] = {}
        for name in cols:
            if name in _NOT_LABELS:
                continue
            try:
                value = _parse_label(row.get(name, ""))
            except ValueError:
                raise ValueError(
                    f"{where}: label {name!r} must be 0/1, got {row[name]!r}"
                ) from None
            if value is None:
                continue
            if name not in vocab:
                raise ValueError(f"{where}: label {name!r} does not belong to {modality} {vocab}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}: label {name!r} must be in [0, 1], got {value}")
            labels[name] = value
        plan.append((where, path, modality, labels, series))
    ids = []
    for where, path, modality, labels, series in plan:
        try:
            ids.append(add_image(study, path, modality, labels, True, None, series))
        except (ValueError, OSError) as exc:
            raise ValueError(f"{where}: {exc} (imported {len(ids)} row(s) before it)") from exc
    return ids


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


# -- integrity ----------------------------------------------------------------------
def check(study: Catalog, clean: bool = False) -> list[str]:
    """List integrity problems; with ``clean`` remove orphan and temporary files."""
    problems: list[str] = []
    try:
        result = study.query("PRAGMA integrity_check")
        if [r[0] for r in result] != ["ok"]:
            problems.append(f"catalog integrity_check: {[r[0] for r in result][:5]}")
    except sqlite3.DatabaseError as exc:
        return [f"catalog is not readable: {exc}"]
    for rec in study.images():
        if not rec.path.exists():
            problems.append(f"image {rec.id}: file {rec.relpath} is missing")
        elif sha256_of(rec.path) != rec.sha256:
            problems.append(f"image {rec.id}: file {rec.relpath} changed (hash mismatch)")
    known = set()
    for (image_id,) in study.query("SELECT DISTINCT image_id FROM masks"):
        for v in study.mask_versions(image_id):
            known.add(v.path.resolve())
            if not v.path.exists():
                problems.append(
                    f"mask version {v.id} (image {image_id} v{v.version}): "
                    f"file {v.path.name} is missing"
                )
            elif sha256_of(v.path) != v.sha256:
                problems.append(
                    f"mask version {v.id} (image {image_id} v{v.version}): "
                    "file changed (hash mismatch)"
                )
    masks_dir = study.root / "masks"
    for f in sorted(masks_dir.rglob("*")) if masks_dir.is_dir() else []:
        if not f.is_file() or f.resolve() in known:
            continue
        kind = "temporary file" if _TMP_FILE.match(f.name) else "orphan mask file"
        problems.append(
            f"{kind} {f.relative_to(study.root).as_posix()} (no catalog row)"
            + (": removed" if clean else "")
        )
        if clean:
            f.unlink()
    for f in leftovers(study.root / "images", _TMP_FILE):
        kind = "unfinished import" if f.name.startswith(TMP_PREFIX) else "temporary file"
        problems.append(
            f"{kind} {f.relative_to(study.root).as_posix()} (no catalog row)"
            + (": removed" if clean else "")
        )
        if clean:
            remove(f)
    return problems
