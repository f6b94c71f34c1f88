"""``Study.check``: what is wrong with a study, and (on request) removing leftovers.

Catalog-driven: a file is a leftover only if no catalog row refers to it (an image row's
file or folder, a mask row's file) and it is not inside or above such a path. The scan
for leftovers and their removal run under the study's file lock held exclusively, the
lock every writer of files holds shared from its first file to its commit, so no file
a writer is about to commit is ever reported or removed. What may be removed:

- under ``masks/``: any file no row refers to (an orphan version of a crashed save,
  a writer's temp file);
- under ``images/``: unfinished imports (``.tmp-*`` entries whose ``flock`` no live
  import holds: an import stages its copy without the study lock, holding a lock on
  the entry itself) and temp files (``.<name>.<random>.tmp*``) that no row refers to.
  Other unregistered files there are left alone.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from napari_wsseg.study.importing import TMP_PREFIX, is_held, remove
from napari_wsseg.study.records import sha256_of

if TYPE_CHECKING:
    from napari_wsseg.study.catalog import Catalog

TMP_FILE = re.compile(r"^\..*\.tmp")


def check(study: Catalog, clean: bool = False) -> list[str]:
    """List integrity problems; ``clean=True`` also removes the leftovers listed."""
    problems: list[str] = []
    try:
        result = study.query("PRAGMA integrity_check")
        if [r[0] for r in result] != ["ok"]:
            problems.append(f"catalog integrity_check: {[r[0] for r in result][:5]}")
    except sqlite3.DatabaseError as exc:
        return [f"catalog is not readable: {exc}"]
    # rows commit only after their files are in place, and files are never changed:
    # these checks need no lock
    for rec in study.images():
        if not rec.path.exists():
            problems.append(f"image {rec.id}: file {rec.relpath} is missing")
        elif sha256_of(rec.path) != rec.sha256:
            problems.append(f"image {rec.id}: file {rec.relpath} changed (hash mismatch)")
    for (image_id,) in study.query("SELECT DISTINCT image_id FROM masks"):
        for v in study.mask_versions(image_id):
            where = f"mask version {v.id} (image {image_id} v{v.version})"
            if not v.path.exists():
                problems.append(f"{where}: file {v.path.name} is missing")
            elif sha256_of(v.path) != v.sha256:
                problems.append(f"{where}: file changed (hash mismatch)")
    with study.file_lock(exclusive=True):
        problems += _leftovers(study, clean)
    return problems


class _Referenced:
    """The catalog's paths (relative to the root), their folders and their ancestors."""

    def __init__(self, study: Catalog) -> None:
        rows = study.query("SELECT relpath FROM images UNION ALL SELECT relpath FROM masks")
        self.paths = {r[0] for r in rows}
        self.dirs = {p for p in self.paths if (study.root / p).is_dir()}
        self.above = {
            str(Path(p).parents[i].as_posix())
            for p in self.paths
            for i in range(len(Path(p).parents) - 1)
        }

    def __contains__(self, rel: str) -> bool:
        if rel in self.paths or rel in self.above:
            return True
        return any(str(q.as_posix()) in self.dirs for q in Path(rel).parents)


def _leftovers(study: Catalog, clean: bool) -> list[str]:
    refs = _Referenced(study)  # read under the exclusive lock: no commit is in flight
    root = study.root
    out: list[str] = []

    def report(path: Path, kind: str) -> None:
        rel = path.relative_to(root).as_posix()
        out.append(f"{kind} {rel} (no catalog row)" + (": removed" if clean else ""))
        if clean:
            remove(path)

    masks = root / "masks"
    for f in sorted(masks.rglob("*")) if masks.is_dir() else []:
        if f.is_dir() and not f.is_symlink():
            continue
        if f.relative_to(root).as_posix() in refs:
            continue
        report(f, "temporary file" if TMP_FILE.match(f.name) else "orphan mask file")
    images = root / "images"
    found = sorted(
        p
        for p in (images.rglob("*") if images.is_dir() else [])
        if p.name.startswith(TMP_PREFIX) or (p.is_file() and TMP_FILE.match(p.name))
    )
    done: list[Path] = []
    for p in found:
        if any(q in p.parents for q in done) or p.relative_to(root).as_posix() in refs:
            continue
        if p.name.startswith(TMP_PREFIX) and is_held(p):
            continue  # a live import's staged copy (it holds the entry's flock)
        report(p, "unfinished import" if p.name.startswith(TMP_PREFIX) else "temporary file")
        done.append(p)
    return out
