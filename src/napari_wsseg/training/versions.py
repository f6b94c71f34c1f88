"""Model version folders (``models/<method>/vNNN``), without torch: the registry and
the shipped default models both claim folders this way."""

from __future__ import annotations

import re
from pathlib import Path

WEIGHTS = "weights.pt"
VERSION_RE = re.compile(r"^v(\d{3,})$")


def new_version_dir(root: Path) -> Path:
    """Claim the next free ``vNNN`` folder (mkdir is atomic: two jobs never share one)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := VERSION_RE.match(p.name))]
    n = max(taken, default=0) + 1
    while True:
        path = root / f"v{n:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def has_version(method_dir: Path) -> bool:
    """Whether ``method_dir`` holds a finished version (one with its weights)."""
    return method_dir.is_dir() and any(
        VERSION_RE.match(p.name) and (p / WEIGHTS).exists() for p in method_dir.iterdir()
    )
