"""Bringing an image into a study: read it once, copy only what it is, atomically.

A DICOM folder is read through ``io.read_image`` (its main series, or the one
``series`` names) and only that series' files are copied, under their paths
relative to the folder, so the study's copy holds exactly one series and reads
back to the same volume. A copy is made under a hidden name beside its final
place (``.tmp-<name>-<pid>-<n>``) and renamed onto that place only when complete;
an error removes it, and a crash leaves at most that entry, which
:meth:`Study.check` reports and ``check(clean=True)`` removes (under the study's file
lock, and skipping a staged entry whose ``flock`` a live import holds). A slide is
accepted only once a sample of its tiles decodes.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_wsseg.study.records import check_labels, sha256_of
from napari_wsseg.study.vocab import labels_for

if TYPE_CHECKING:
    from napari_wsseg.study.catalog import Catalog

TMP_PREFIX = ".tmp-"
# What the study records of a DICOM folder's series (from ``io`` meta["series"]).
SERIES_KEYS = ("index", "uid", "number", "description", "label", "n_slices")
_COUNTER = itertools.count()


@dataclass
class Incoming:
    """An image about to enter a study.

    ``meta`` is what the catalog records (``shape``; for a DICOM folder also
    ``series``, ``other_series`` and ``source_folder``); ``files`` lists a folder's
    files to copy (relative paths), None for a single file.
    """

    path: Path
    modality: str
    meta: dict[str, Any] = field(default_factory=dict)
    files: list[str] | None = None

    @property
    def n_series(self) -> int:
        """How many series the source folder holds (1 for a file)."""
        return 1 + len(self.meta.get("other_series", []))


def add_image(
    study: Catalog,
    path: str | Path,
    modality: str | None,
    labels: dict[str, Any] | None,
    copy: bool,
    meta: dict[str, Any] | None,
    series: str | int | None,
    incoming: Incoming | None = None,
) -> int:
    """:meth:`Study.add_image`: read, check, copy (staged, then renamed), insert.

    ``incoming`` is the result of :func:`inspect` when the caller already read the
    image (CSV import validates every row first). The staged copy is claimed and
    locked under the study's file lock, and published and committed under it again:
    a concurrent ``check(clean=True)`` never takes the staged copy for a leftover,
    and never waits for a long copy.
    """
    if modality is not None:
        labels_for(modality)
    src = Path(path)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such image file or folder")
    try:
        study.relative(src)
        inside = True
    except ValueError:
        if not copy:
            raise
        inside = False
        refuse_enclosing(src, study.root)
    incoming = incoming or inspect(src, modality, series)
    if inside and series is not None and incoming.n_series > 1:
        raise ValueError(
            f"{src}: this folder inside the study holds {incoming.n_series} series and "
            "its files are never moved, so one cannot be picked from it: import the "
            "folder from outside the study (only that series is copied) or split it "
            "into one folder per series"
        )
    info = {**incoming.meta, **(meta or {})}
    clean = check_labels(incoming.modality, labels or {}, src)
    if inside:
        with study.file_lock(exclusive=False):
            sha = sha256_of(src)
            with study.transaction() as db:
                return study.insert_image(db, src, src, incoming.modality, sha, info, clean)
    folder = study.root / "images" / incoming.modality
    with study.file_lock(exclusive=False):  # the cleaner never sees it unclaimed
        tmp, hold = claim(src, folder, incoming.files is not None)
    dst = None
    try:
        fill(src, tmp, incoming.files)
        sha = sha256_of(tmp)
        with study.file_lock(exclusive=False), study.transaction() as db:
            dst = publish(tmp, folder, src.name or src.resolve().name)
            image_id = study.insert_image(db, src, dst, incoming.modality, sha, info, clean)
    except BaseException:
        remove(tmp)
        if dst is not None:
            remove(dst)
        raise
    finally:
        os.close(hold)
    return image_id


def inspect(path: Path, modality: str | None, series: str | int | None) -> Incoming:
    """Read ``path`` once (``series`` picks one of a DICOM folder) and say what to copy."""
    from napari_wsseg.io import read_image

    image = read_image(path, modality, series)
    if image.multiscale:  # opening read tags only: decode a sample before accepting it
        from napari_wsseg.io.slide import check_tiles

        check_tiles(image, path)
    incoming = Incoming(path, image.modality, {"shape": list(image.spatial_shape)})
    if path.is_dir():
        chosen = image.meta.get("series", {})
        others = image.meta.get("other_series", [])
        incoming.meta.update(
            series={k: chosen.get(k) for k in SERIES_KEYS},
            other_series=[{k: o.get(k) for k in SERIES_KEYS} for o in others],
            source_folder=str(path.resolve()),
        )
        incoming.files = _series_files(path, image.meta)
    return incoming


def _series_files(folder: Path, meta: dict[str, Any]) -> list[str]:
    """The chosen series' files relative to ``folder`` (a one-file image has no list)."""
    files = list(meta.get("files") or [])
    if not files and meta.get("source_path"):
        files = [Path(meta["source_path"]).relative_to(folder).as_posix()]
    root = folder.resolve()
    for rel in files:
        if Path(rel).is_absolute() or not (folder / rel).resolve().is_relative_to(root):
            raise ValueError(f"{folder}: series file {rel} lies outside the folder")
    if not files:
        raise ValueError(f"{folder}: the reader did not say which files hold the series")
    return files


def copy_file(src: Path, dst: Path) -> None:
    """Copy one file with its times, flushed to disk before the copy is renamed."""
    shutil.copy2(src, dst)
    with open(dst, "rb") as fh:
        os.fsync(fh.fileno())


def remove(path: Path) -> None:
    """Delete a file or a folder tree; nothing if it is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def claim(src: Path, folder: Path, is_dir: bool) -> tuple[Path, int]:
    """Create the hidden staging entry for ``src`` in ``folder`` and lock it.

    Returns the entry and an open descriptor holding an exclusive ``flock`` on it
    (kept through the rename onto the final name, which keeps the inode): the cleaner
    skips a staged entry whose lock is held, so a long copy never has to hold the
    study's lock. Call it under the study's file lock (shared)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = src.name or src.resolve().name
    tmp = folder / f"{TMP_PREFIX}{name}-{os.getpid()}-{next(_COUNTER)}"
    remove(tmp)  # a leftover of a crashed process that had the same pid
    if is_dir:
        tmp.mkdir()
        fd = os.open(tmp, os.O_RDONLY)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
    except ImportError:  # pragma: no cover - no flock on this platform
        pass
    return tmp, fd


def is_held(path: Path) -> bool:
    """Whether a live import holds the staged entry ``path`` (see :func:`claim`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock this probe took
    return False


def fill(src: Path, tmp: Path, files: list[str] | None) -> None:
    """Copy ``src`` (a file, or the listed files of a folder) into the claimed ``tmp``."""
    if files is None:
        copy_file(src, tmp)  # same inode: the claim's lock stays on it
        return
    for rel in files:
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        copy_file(src / rel, out)


def _names(name: str, is_dir: bool) -> Iterator[str]:
    yield name
    stem, dot, ext = ("", "", "") if is_dir else name.partition(".")
    for n in itertools.count(1):
        yield f"{name}_{n}" if is_dir else f"{stem}_{n}{dot}{ext}"


def publish(tmp: Path, folder: Path, name: str) -> Path:
    """Rename the staged ``tmp`` onto the first free name among ``name``, ``name_1``...
    (``stem_1.ext`` for a file). Call it inside the catalog's write transaction: the
    transaction keeps two study processes from taking the same name."""
    for candidate in _names(name, tmp.is_dir()):
        dst = folder / candidate
        if dst.exists() or dst.is_symlink():
            continue
        os.rename(tmp, dst)
        _sync_dir(folder)
        return dst
    raise AssertionError("unreachable")  # pragma: no cover


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def refuse_enclosing(src: Path, root: Path) -> None:
    """A folder that holds the study cannot be copied into it."""
    if src.is_dir() and root.resolve().is_relative_to(src.resolve()):
        raise ValueError(f"{src}: the study {root} lies inside this folder; cannot import it")
