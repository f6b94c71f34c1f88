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
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.study import importing, maintenance
from napari_wsseg.study.records import (
    ACCEPTED_SOURCES,
    MASK_SOURCES,
    SCHEMA,
    SCHEMA_VERSION,
    ImageRecord,
    MaskVersion,
    check_labels,
    json_default,
    mask_suffix,
    sha256_of,
    utc_now,
)
from napari_wsseg.study.snapshot import Snapshot

CATALOG = "catalog.sqlite"
BUSY_TIMEOUT_S = 60.0


class Study:
    """A study folder; open with :meth:`create` or :meth:`open`, close when done."""

    def __init__(self, root: str | Path, _conn: sqlite3.Connection) -> None:
        self.root = Path(root).resolve()
        self._conn = _conn
        self._lock = threading.RLock()

    # -- opening -------------------------------------------------------------------
    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(
            db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OSError(f"{db}: could not switch the catalog to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @classmethod
    def create(cls, root: str | Path) -> Study:
        """Create a study in ``root`` (made if needed); refuses a folder that has one."""
        root = Path(root)
        if (root / CATALOG).exists():
            raise FileExistsError(f"{root}: a study already exists here; use Study.open")
        for sub in ("images", "masks", "models"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conn = cls._connect(root / CATALOG)
        conn.executescript(
            f"BEGIN IMMEDIATE;{SCHEMA}"
            f"INSERT INTO schema_version(version) VALUES ({SCHEMA_VERSION});COMMIT;"
        )
        return cls(root, conn)

    @classmethod
    def open(cls, root: str | Path) -> Study:
        """Open an existing study; a clear error if ``root`` is not one."""
        root = Path(root)
        db = root / CATALOG
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such study folder")
        if not db.is_file():
            raise FileNotFoundError(f"{root}: not a study (no {CATALOG}); create one first")
        conn = cls._connect(db)
        try:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ValueError(f"{db}: not a study catalog ({exc})") from exc
        if row[0] is None or row[0] > SCHEMA_VERSION:
            conn.close()
            raise ValueError(
                f"{db}: catalog schema {row[0]} is not supported "
                f"(this version reads {SCHEMA_VERSION})"
            )
        return cls(root, conn)

    def close(self) -> None:
        """Close the catalog connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Study({str(self.root)!r})"

    @property
    def models_dir(self) -> Path:
        """Folder where training runs put model versions (``root/models``)."""
        path = self.root / "models"
        path.mkdir(exist_ok=True)
        return path

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- paths ---------------------------------------------------------------------
    def _inside(self, path: Path) -> str:
        """Path relative to the root; raises if it resolves outside the study."""
        resolved = path.resolve()
        try:
            return resolved.relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{path}: resolves outside the study folder {self.root}") from None

    def _abs(self, relpath: str) -> Path:
        path = (self.root / relpath).resolve()
        self._inside(path)
        return path

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

    def _insert(
        self,
        db: sqlite3.Connection,
        src: Path,
        dst: Path,
        modality: str,
        sha: str,
        info: dict[str, Any],
        labels: dict[str, Any],
    ) -> int:
        """Insert an image row and its labels within the write transaction ``db``."""
        relpath = self._inside(dst)
        if db.execute("SELECT id FROM images WHERE relpath = ?", (relpath,)).fetchone():
            raise ValueError(f"{src}: already in the study as {relpath}")
        cur = db.execute(
            "INSERT INTO images(relpath, modality, sha256, meta, added) VALUES (?,?,?,?,?)",
            (relpath, modality, sha, json.dumps(info, default=json_default), utc_now()),
        )
        image_id = int(cur.lastrowid)
        self._write_labels(db, image_id, labels)
        return image_id

    @staticmethod
    def _write_labels(db: sqlite3.Connection, image_id: int, labels: dict[str, Any]) -> None:
        now = utc_now()
        for name, value in labels.items():
            if value is None:
                db.execute("DELETE FROM labels WHERE image_id = ? AND name = ?", (image_id, name))
            else:
                db.execute(
                    "INSERT INTO labels(image_id, name, value, updated) VALUES (?,?,?,?) "
                    "ON CONFLICT(image_id, name) DO UPDATE SET value = excluded.value, "
                    "updated = excluded.updated",
                    (image_id, name, value, now),
                )

    def set_labels(self, image_id: int, labels: dict[str, Any]) -> None:
        """Set (or with None, clear) image-level labels of one image."""
        rec = self.image(image_id)
        clean = check_labels(rec.modality, labels, f"image {image_id}")
        with self._write() as db:
            self._write_labels(db, image_id, clean)

    def images(self, modality: str | None = None) -> list[ImageRecord]:
        """All images (of one modality), by id, with labels and mask status."""
        sql = (
            "SELECT i.id, i.relpath, i.modality, i.sha256, i.meta, "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id), "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.source IN "
            f"{ACCEPTED_SOURCES!r}), "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.source = 'predicted') "
            "FROM images i"
        )
        args: tuple = ()
        if modality is not None:
            sql += " WHERE i.modality = ?"
            args = (modality,)
        rows = self._query(sql + " ORDER BY i.id", args)
        labels: dict[int, dict[str, float]] = {}
        for image_id, name, value in self._query("SELECT image_id, name, value FROM labels"):
            labels.setdefault(image_id, {})[name] = value
        out = []
        for iid, rel, mod, sha, meta, n, n_acc, n_pred in rows:
            status = "expert" if n_acc else ("predicted" if n_pred else "none")
            out.append(
                ImageRecord(
                    id=iid,
                    path=self.root / rel,
                    relpath=rel,
                    modality=mod,
                    sha256=sha,
                    labels=labels.get(iid, {}),
                    n_mask_versions=n,
                    mask_status=status,
                    meta=json.loads(meta),
                )
            )
        return out

    def image(self, image_id: int) -> ImageRecord:
        """One image record; KeyError naming the id if it is not in the study."""
        for rec in self.images():
            if rec.id == image_id:
                return rec
        raise KeyError(f"no image with id {image_id} in study {self.root}")

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
        rec = self.image(image_id)
        arr = maintenance.check_mask_array(rec, array)
        if parent is not None:
            row = self._query("SELECT image_id FROM masks WHERE id = ?", (int(parent),))
            if not row or row[0][0] != image_id:
                raise ValueError(
                    f"parent mask version {parent} is not a version of image {image_id}"
                )
        if like is None and rec.modality == "ct":
            like = maintenance.read_like(rec.path)
        folder = self.root / "masks" / str(image_id)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = mask_suffix(rec.modality)
        with self._write() as db:
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
                        self._inside(path),
                        sha256_of(path),
                        model_version,
                    ),
                )
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return int(cur.lastrowid)

    def _versions(self, where: str, args: tuple) -> list[MaskVersion]:
        rows = self._query(
            "SELECT id, image_id, version, source, author, created, parent, relpath, "
            f"model_version, sha256 FROM masks WHERE {where} ORDER BY image_id, version",
            args,
        )
        return [
            MaskVersion(
                id=r[0],
                image_id=r[1],
                version=r[2],
                source=r[3],
                author=r[4],
                created=r[5],
                parent=r[6],
                path=self.root / r[7],
                model_version=r[8],
                sha256=r[9],
            )
            for r in rows
        ]

    def mask_versions(self, image_id: int) -> list[MaskVersion]:
        """All mask versions of an image, oldest first."""
        return self._versions("image_id = ?", (image_id,))

    def mask_version(self, version_id: int) -> MaskVersion:
        """One mask version by id."""
        found = self._versions("id = ?", (version_id,))
        if not found:
            raise KeyError(f"no mask version with id {version_id} in study {self.root}")
        return found[0]

    def load_mask(self, version_id: int) -> np.ndarray:
        """The pixels of a mask version (integer label array; X-ray (10, Y, X))."""
        return maintenance.read_mask_file(self.mask_version(version_id).path)

    def latest_accepted_mask(self, image_id: int) -> MaskVersion | None:
        """The newest expert/corrected version of an image, or None."""
        found = [v for v in self.mask_versions(image_id) if v.accepted]
        return found[-1] if found else None

    def reference_mask(self, image_id: int) -> MaskVersion | None:
        """The newest reference (ground-truth, evaluation-only) version, or None."""
        found = [v for v in self.mask_versions(image_id) if v.source == "reference"]
        return found[-1] if found else None

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
        """Integrity problems (catalog, hashes, missing/orphan files); ``clean``
        deletes orphan and temporary files, which no catalog row refers to."""
        return maintenance.check(self, clean)
