"""Model version folders (``models/<method>/vNNN``), without torch.

A version is written in a hidden staging folder (``.staging-<token>``) and renamed onto
the next free ``vNNN`` under the method folder's lock (``.lock``, ``flock``): a
``vNNN`` folder is complete or absent, and two jobs never take the same number. The
``token`` of a training run is recorded in ``info.json`` (``run_token``), so a resumed
job that had already registered finds its version instead of adding a second one.

Reading a version validates it: ``info.json`` an object with a ``method`` string and a
``config`` object, ``metrics.json`` an object, ``weights.pt`` present; any other folder
gets a :class:`ModelFolderError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from napari_wsseg.io.base import InputError

WEIGHTS = "weights.pt"
VERSION_RE = re.compile(r"^v(\d{3,})$")
STAGING = ".staging-"
LOCK = ".lock"
METHOD_DIR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class ModelFolderError(InputError):
    """A model version folder that is incomplete or malformed."""


@contextmanager
def version_lock(method_dir: Path) -> Iterator[None]:
    """Exclusive lock of a method's version folders (``flock`` on ``.lock``)."""
    method_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no flock on this platform: mkdir/rename stay atomic
        yield
        return
    fd = os.open(method_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _numbers(root: Path) -> list[int]:
    return [int(m.group(1)) for p in root.iterdir() if (m := VERSION_RE.match(p.name))]


def new_version_dir(root: Path) -> Path:
    """Claim the next free ``vNNN`` folder (empty; prefer :func:`publish_version`)."""
    with version_lock(root):
        n = max(_numbers(root), default=0) + 1
        while True:
            path = root / f"v{n:03d}"
            try:
                path.mkdir()
                return path
            except FileExistsError:
                n += 1


def stage_dir(method_dir: Path, token: str) -> Path:
    """A fresh staging folder for a version (a leftover of the same token is removed)."""
    if not re.fullmatch(r"[0-9a-zA-Z_-]+", token):
        raise ValueError(f"bad version token {token!r}")
    method_dir.mkdir(parents=True, exist_ok=True)
    path = method_dir / f"{STAGING}{token}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def publish_version(method_dir: Path, staged: Path, token: str | None = None) -> Path:
    """Rename a complete staging folder onto the next free ``vNNN``; returns it.

    Under the method's lock. With ``token``, a version already registered with that
    token is returned instead (and the staging folder removed): registration is
    idempotent.
    """
    if not (staged / WEIGHTS).is_file():
        raise ModelFolderError(staged, f"staged version has no {WEIGHTS}; not publishing it")
    with version_lock(method_dir):
        if token is not None:
            found = find_by_token(method_dir, token)
            if found is not None:
                shutil.rmtree(staged, ignore_errors=True)
                return found
        n = max(_numbers(method_dir), default=0) + 1
        while True:
            dst = method_dir / f"v{n:03d}"
            if not dst.exists():
                staged.rename(dst)
                _sync_dir(method_dir)
                return dst
            n += 1


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_by_token(method_dir: Path, token: str) -> Path | None:
    """The complete version whose ``info.json`` carries ``run_token == token``."""
    if not method_dir.is_dir():
        return None
    for vdir in sorted(p for p in method_dir.iterdir() if VERSION_RE.match(p.name)):
        if not (vdir / WEIGHTS).is_file():
            continue
        try:
            info = json.loads((vdir / "info.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("run_token") == token:
            return vdir
    return None


def has_version(method_dir: Path) -> bool:
    """Whether ``method_dir`` holds a finished version (one with its weights)."""
    return method_dir.is_dir() and any(
        VERSION_RE.match(p.name) and (p / WEIGHTS).exists() for p in method_dir.iterdir()
    )


def _read_object(path: Path, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFolderError(path, f"not a model version (no {path.name})") from None
    except (OSError, ValueError) as err:
        raise ModelFolderError(path, f"unreadable {path.name} ({err})") from None
    if not isinstance(obj, dict):
        raise ModelFolderError(path, f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def read_info(version_dir: str | Path) -> dict[str, Any]:
    """A version's ``info.json``, checked: an object with ``method`` and ``config``."""
    path = Path(version_dir) / "info.json"
    info = _read_object(path, "info.json")
    method = info.get("method")
    if not isinstance(method, str) or not method:
        raise ModelFolderError(path, f"'method' must be a method name, got {method!r}")
    config = info.get("config", {})
    if not isinstance(config, dict):
        raise ModelFolderError(path, f"'config' must be an object, got {type(config).__name__}")
    return info


def read_metrics(version_dir: str | Path) -> dict[str, Any]:
    """A version's ``metrics.json``: an object (empty when the file is absent)."""
    path = Path(version_dir) / "metrics.json"
    if not path.exists():
        return {}
    return _read_object(path, "metrics.json")


def read_version(version_dir: str | Path) -> dict[str, Any]:
    """``{"info", "metrics"}`` of a complete version; ModelFolderError otherwise."""
    vdir = Path(version_dir)
    if not vdir.is_dir():
        raise ModelFolderError(vdir, "no such model version folder")
    if not (vdir / WEIGHTS).is_file():
        raise ModelFolderError(vdir, f"incomplete model version (no {WEIGHTS})")
    return {"info": read_info(vdir), "metrics": read_metrics(vdir)}


def scan_versions(models_root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every complete version under ``models_root`` (oldest first per method) and one
    line per folder that is not a valid version: a bad one never hides the others."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    if not models_root.is_dir():
        return rows, problems
    for mdir in sorted(p for p in models_root.iterdir() if p.is_dir()):
        for vdir in sorted(p for p in mdir.iterdir() if VERSION_RE.match(p.name)):
            try:
                found = read_version(vdir)
            except ModelFolderError as err:
                problems.append(str(err))
                continue
            info = found["info"]
            rows.append(
                {
                    "method": mdir.name,
                    "version": vdir.name,
                    "path": str(vdir),
                    "created": str(info.get("created", "")),
                    "parent": info.get("parent"),
                    "metrics": found["metrics"],
                    "info": info,
                }
            )
    return rows, problems
