"""Atomic file writes: temp file in the same folder, fsync, rename.

The temp file is created with ``O_CREAT | O_EXCL`` and mode 0666, so the kernel applies
the user's umask: a file written this way gets the mode a plain ``open(path, "w")``
would give it (``tempfile.mkstemp`` would make it 0600, unreadable by the other users
of a shared study). Temp names are ``.<stem>.<random>.tmp<suffixes>``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from . import faults

TMP_MARK = ".tmp"


def _create_tmp(path: Path) -> Path:
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    for _ in range(100):
        tmp = path.parent / f".{stem}.{secrets.token_hex(6)}{TMP_MARK}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path.parent}: could not create a temporary file")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename over ``path``; a crash leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_tmp(path)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        faults.point(f"atomic-before-rename:{path.name}")
        os.replace(tmp_path, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))
