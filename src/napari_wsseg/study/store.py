"""The study datastore: a folder with images, weak labels and versioned masks.

Layout (see docs/study.md)::

    root/catalog.sqlite        SQLite catalog (WAL), schema in ``records.SCHEMA``
    root/images/<modality>/    images copied in at import (renamed into place when complete)
    root/masks/<id>/v<k>.ext   mask versions, written once, never overwritten
    root/models/               model versions saved by training runs

Two processes (the viewer and a training job) may use a study at once: the catalog
runs in WAL mode with a busy timeout, and every write is one ``BEGIN IMMEDIATE``
transaction. A mask file is written (atomically) before its row is committed, so a
crash leaves at most an orphan file, which :meth:`Study.check` reports and cleans.
Writers of files hold the study's file lock shared; the cleaner holds it exclusively
(see docs/study.md, "Guarantees").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.io import faults
from napari_wsseg.study import importing, integrity, maintenance
from napari_wsseg.study.catalog import CATALOG, Catalog
from napari_wsseg.study.records import (
    MASK_SOURCES,
    as_image_id,
    check_labels,
    mask_suffix,
    sha256_of,
    utc_now,
)
from napari_wsseg.study.snapshot import Snapshot

__all__ = ["CATALOG", "Study"]


class Study(Catalog):
    """A study folder; open with :meth:`create` or :meth:`open`, close when done.

    The catalog's primitives and read side come from :class:`Catalog`; this class adds
    the writes that go through ``importing`` (images) and ``maintenance`` (masks,
    CSV, snapshots, checks)."""

    # -- images and labels ---------------------------------------------------------
    def add_image(
        self,
        path: str | Path,
        modality: str | None,
        labels: dict[str, Any] | None = None,
        copy: bool = True,
        meta: dict[str, Any] | None = None,
        series: str | int | None = None,
    ) -> int:
        """Register an image (file or DICOM folder) and its labels; returns its id.

        The image is read once to check it and record its shape (``modality=None``:
        the reader's guess). A file outside the study is copied into
        ``images/<modality>/`` (``copy=True``) or refused (``copy=False``). A DICOM
        folder is read as its main series, or the one ``series`` names (UID or index),
        and only that series' files are copied (``images/<modality>/<folder name>/``);
        ``meta`` records ``series``, ``other_series`` and ``source_folder``. A copy is
        renamed into place only when complete. A folder already inside the study is
        registered as it is, and refuses ``series`` when it holds several series.
        """
        return importing.add_image(self, path, modality, labels, copy, meta, series)

    def set_labels(self, image_id: int, labels: dict[str, Any]) -> None:
        """Set (or with None, clear) image-level labels of one image."""
        image_id = as_image_id(image_id, self.root)
        rec = self.image(image_id)
        clean = check_labels(rec.modality, labels, f"image {image_id}")
        with self.transaction() as db:
            self.write_labels(db, image_id, clean)

    # -- masks ---------------------------------------------------------------------
    def save_mask(
        self,
        image_id: int,
        array: Any,
        source: str,
        author: str = "",
        parent: int | None = None,
        model_version: str | None = None,
        like: Any = None,
    ) -> int:
        """Store ``array`` as a new mask version of an image; returns the version id.

        The file ``masks/<image_id>/v<k>.<ext>`` is written atomically, then its row
        committed, all while holding the catalog's write lock, so ``k`` is unique.
        ``like`` is an ``ImageData`` to take geometry from (CT: read if not given).
        """
        if source not in MASK_SOURCES:
            raise ValueError(f"mask source must be one of {MASK_SOURCES}, got {source!r}")
        image_id = as_image_id(image_id, self.root)
        rec = self.image(image_id)
        arr = maintenance.check_mask_array(rec, array)
        if parent is not None:
            parent = as_image_id(parent, self.root, "parent mask version id")
            row = self.query("SELECT image_id FROM masks WHERE id = ?", (parent,))
            if not row or row[0][0] != image_id:
                raise ValueError(
                    f"parent mask version {parent} is not a version of image {image_id}"
                )
        if like is None and rec.modality == "ct":
            like = maintenance.read_like(rec.path)
        folder = self.root / "masks" / str(image_id)
        suffix = mask_suffix(rec.modality)
        # file lock (shared) before the catalog's write lock: the cleaner, holding it
        # exclusively, never sees this file between its rename and its row's commit
        with self.file_lock(exclusive=False), self.transaction() as db:
            folder.mkdir(parents=True, exist_ok=True)
            k_db = db.execute("SELECT MAX(version) FROM masks WHERE image_id = ?", (image_id,))
            k = max(k_db.fetchone()[0] or 0, maintenance.max_file_version(folder)) + 1
            path = folder / f"v{k}{suffix}"
            if path.exists():  # cannot happen: k is above every file's version
                raise FileExistsError(f"{path}: refusing to overwrite a mask version")
            maintenance.write_mask_file(path, arr, like)
            try:
                cur = db.execute(
                    "INSERT INTO masks(image_id, version, source, author, created, parent, "
                    "relpath, sha256, model_version) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        image_id,
                        k,
                        source,
                        author,
                        utc_now(),
                        parent,
                        self.relative(path),
                        sha256_of(path),
                        model_version,
                    ),
                )
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            faults.point("save-mask:before-commit")
            return int(cur.lastrowid)

    def load_mask(self, version_id: int) -> np.ndarray:
        """The pixels of a mask version (integer label array; X-ray (10, Y, X))."""
        return maintenance.read_mask_file(self.mask_version(version_id).path)

    # -- bulk ------------------------------------------------------------------------
    def import_csv(self, csv_path: str | Path, base_dir: str | Path | None = None) -> list[int]:
        """Import images listed in a CSV (path, modality, one column per label)."""
        return maintenance.import_csv(self, csv_path, base_dir)

    def snapshot(
        self, modality: str | None = None, val_fraction: float = 0.0, seed: int = 0
    ) -> Snapshot:
        """A frozen list of items for training; split is deterministic in ``seed``."""
        return maintenance.make_snapshot(self, modality, val_fraction, seed)

    def check(self, clean: bool = False) -> list[str]:
        """Integrity problems (catalog, hashes, missing/orphan files). A dry run by
        default; ``clean=True`` deletes the leftovers it lists: files under ``masks/``
        and unfinished imports / temp files under ``images/`` that no catalog row
        refers to, under the writers' lock (never a file a writer holds, never one a
        row points to)."""
        return integrity.check(self, clean)
