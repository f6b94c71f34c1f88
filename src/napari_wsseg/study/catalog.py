"""The study catalog: the SQLite connection, its write transaction, paths inside the
study, and the read side of images, labels and mask versions.

The primitives that ``importing``, ``maintenance`` and ``store`` build on live here,
so those modules point down at this one and never at each other's internals.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from napari_wsseg.study.records import (
    ACCEPTED_SOURCES,
    SCHEMA,
    SCHEMA_VERSION,
    ImageRecord,
    MaskVersion,
    as_image_id,
    json_default,
    utc_now,
)

CATALOG = "catalog.sqlite"
BUSY_TIMEOUT_S = 60.0
# Writers of files (imports, mask saves) hold this lock shared from their first file
# write to their commit; the cleaner (``check(clean=True)``) holds it exclusively, so
# it never sees a file whose row is about to commit.
LOCKFILE = ".study.lock"
GATEFILE = ".study.gate"


class Catalog:
    """A study folder's catalog; open with :meth:`create` or :meth:`open`, close when done."""

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
    def create(cls, root: str | Path) -> Catalog:
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
    def open(cls, root: str | Path) -> Catalog:
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

    def __enter__(self) -> Catalog:
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
    def file_lock(self, exclusive: bool = False) -> Iterator[None]:
        """The study's writers' lock (``flock`` on ``root/.study.lock``): shared for a
        writer of files, exclusive for the cleaner. Take it before :meth:`transaction`
        (always in that order, so the two never deadlock).

        A gate (``root/.study.gate``) keeps the cleaner from starving: a writer passes
        the gate only to take its shared lock, while the cleaner holds the gate until
        it has its exclusive lock, so no new writer slips in while it waits.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock: a cleaner may race a writer
            yield
            return
        gate = os.open(self.root / GATEFILE, os.O_RDWR | os.O_CREAT, 0o666)
        fd = -1
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fd = os.open(self.root / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
            yield
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(gate)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of one read statement."""
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- paths ---------------------------------------------------------------------
    def relative(self, path: Path) -> str:
        """Path relative to the root; raises if it resolves outside the study."""
        resolved = path.resolve()
        try:
            return resolved.relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{path}: resolves outside the study folder {self.root}") from None

    def resolve(self, relpath: str) -> Path:
        """The absolute path of a catalog relpath; refuses one that leaves the study."""
        path = (self.root / relpath).resolve()
        self.relative(path)
        return path

    # -- images and labels (read side) ---------------------------------------------
    def insert_image(
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
        relpath = self.relative(dst)
        if db.execute("SELECT id FROM images WHERE relpath = ?", (relpath,)).fetchone():
            raise ValueError(f"{src}: already in the study as {relpath}")
        cur = db.execute(
            "INSERT INTO images(relpath, modality, sha256, meta, added) VALUES (?,?,?,?,?)",
            (relpath, modality, sha, json.dumps(info, default=json_default), utc_now()),
        )
        image_id = int(cur.lastrowid)
        self.write_labels(db, image_id, labels)
        return image_id

    @staticmethod
    def write_labels(db: sqlite3.Connection, image_id: int, labels: dict[str, Any]) -> None:
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

    def images(self, modality: str | None = None) -> list[ImageRecord]:
        """All images (of one modality), by id, with labels and mask status."""
        sql = (
            "SELECT i.id, i.relpath, i.modality, i.sha256, i.meta, "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id), "
            "(SELECT m.source FROM masks m WHERE m.image_id = i.id AND m.source IN "
            f"{ACCEPTED_SOURCES!r} ORDER BY m.version DESC LIMIT 1), "
            "(SELECT COUNT(*) FROM masks m WHERE m.image_id = i.id AND m.source = 'predicted') "
            "FROM images i"
        )
        args: tuple = ()
        if modality is not None:
            sql += " WHERE i.modality = ?"
            args = (modality,)
        rows = self.query(sql + " ORDER BY i.id", args)
        labels: dict[int, dict[str, float]] = {}
        for image_id, name, value in self.query("SELECT image_id, name, value FROM labels"):
            labels.setdefault(image_id, {})[name] = value
        out = []
        for iid, rel, mod, sha, meta, n, accepted, n_pred in rows:
            # the newest accepted version's source (expert / corrected), else predicted
            status = accepted or ("predicted" if n_pred else "none")
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
        image_id = as_image_id(image_id, self.root)
        for rec in self.images():
            if rec.id == image_id:
                return rec
        raise KeyError(f"no image with id {image_id} in study {self.root}")

    # -- mask versions (read side) -------------------------------------------------
    def versions(self, where: str, args: tuple) -> list[MaskVersion]:
        rows = self.query(
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
        return self.versions("image_id = ?", (image_id,))

    def mask_version(self, version_id: int) -> MaskVersion:
        """One mask version by id."""
        found = self.versions("id = ?", (version_id,))
        if not found:
            raise KeyError(f"no mask version with id {version_id} in study {self.root}")
        return found[0]

    def latest_accepted_mask(self, image_id: int) -> MaskVersion | None:
        """The newest expert/corrected version of an image, or None."""
        found = [v for v in self.mask_versions(image_id) if v.accepted]
        return found[-1] if found else None

    def reference_mask(self, image_id: int) -> MaskVersion | None:
        """The newest reference (ground-truth, evaluation-only) version, or None."""
        found = [v for v in self.mask_versions(image_id) if v.source == "reference"]
        return found[-1] if found else None
