"""Which model version of a method is the study's current one: the user's decision.

``models/<method>/current.json`` holds the promoted version and the history of
promotions (so "revert to vN" knows vN), written atomically. A new version is never
current until promoted; without the file the current version is the oldest one (the
shipped default, ``v001``). :func:`auto_promote` promotes only a version that is not
worse than the current one on the held-out set. Torch-free.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.training.versions import VERSION_RE, WEIGHTS

CURRENT = "current.json"


def versions(method_dir: str | Path) -> list[str]:
    """Finished version names of a method folder, oldest first."""
    mdir = Path(method_dir)
    if not mdir.is_dir():
        return []
    names = [p.name for p in mdir.iterdir() if VERSION_RE.match(p.name) and (p / WEIGHTS).exists()]
    return sorted(names, key=lambda n: int(n[1:]))


def read_pointer(method_dir: str | Path) -> dict[str, Any]:
    """The pointer file's content (``{}`` when absent); a broken file is an error naming it."""
    path = Path(method_dir) / CURRENT
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ValueError(f"{path}: unreadable promotion pointer ({err}); delete it") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise ValueError(f"{path}: a promotion pointer holds {{'version': 'vNNN', ...}}")
    return data


def current_version(method_dir: str | Path) -> str | None:
    """The promoted version, or the oldest finished one when none was promoted."""
    names = versions(method_dir)
    ptr = read_pointer(method_dir)
    if ptr.get("version") in names:
        return ptr["version"]
    return names[0] if names else None


def promote(method_dir: str | Path, version: str, reason: str = "user") -> dict[str, Any]:
    """Make ``version`` current (atomic write); the previous one goes to the history."""
    mdir = Path(method_dir)
    if version not in versions(mdir):
        raise FileNotFoundError(f"{mdir / version}: no finished model version to promote")
    before = current_version(mdir)
    ptr = read_pointer(mdir)
    history = list(ptr.get("history", []))
    if before and before != version:
        history.append(before)
    data = {
        "version": version,
        "previous": before if before != version else ptr.get("previous"),
        "promoted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "reason": reason,
        "history": history[-50:],
    }
    atomic_write_text(mdir / CURRENT, json.dumps(data, indent=1))
    return data


def decline(method_dir: str | Path, version: str) -> None:
    """Record that the user kept the current version over ``version`` (not offered again)."""
    mdir = Path(method_dir)
    ptr = read_pointer(mdir) or {"version": current_version(mdir) or version, "history": []}
    ptr["declined"] = sorted(set(ptr.get("declined", [])) | {version})
    atomic_write_text(mdir / CURRENT, json.dumps(ptr, indent=1))


def offered_version(method_dir: str | Path) -> str | None:
    """The newest version newer than the current one that the user has not declined:
    what the dock offers beside the current one."""
    names = versions(method_dir)
    cur = current_version(method_dir)
    declined = set(read_pointer(method_dir).get("declined", []))
    newer = [n for n in names if cur and int(n[1:]) > int(cur[1:]) and n not in declined]
    return newer[-1] if newer else None


def previous_version(method_dir: str | Path) -> str | None:
    """The version that was current before the current one (what "revert" goes back to)."""
    prev = read_pointer(method_dir).get("previous")
    return prev if prev in versions(method_dir) else None


def revert(method_dir: str | Path) -> dict[str, Any]:
    """Promote the previous version back."""
    prev = previous_version(method_dir)
    if prev is None:
        raise ValueError(f"{Path(method_dir)}: no earlier promoted version to revert to")
    return promote(method_dir, prev, reason="revert")


def not_worse(new: float | None, old: float | None, tol: float = 0.0) -> bool:
    """Whether held-out score ``new`` is at least ``old - tol`` (unknown scores: no)."""
    return new is not None and (old is None or new >= old - tol)


def auto_promote(
    method_dir: str | Path, version: str, new_score: float | None, current_score: float | None
) -> bool:
    """Promote ``version`` if its held-out score is not worse than the current one's."""
    if not not_worse(new_score, current_score):
        return False
    promote(method_dir, version, reason="auto: not worse on the held-out set")
    return True
