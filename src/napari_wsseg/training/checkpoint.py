"""Atomic checkpoints, and loading ``.pt`` files without running pickled code.

Every ``.pt`` file is read with ``torch.load(weights_only=True)``: tensors, numbers,
strings and containers only. A file carrying any other pickled object is refused
with a message naming it, before any of its code can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.io.atomic import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"


class UnsafeCheckpointError(ValueError):
    """A .pt file holds pickled objects beyond tensors and plain containers."""


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for a refused file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it carries a pickled Python object that is not a tensor "
            f"or a plain container (weights-only loading; nothing in it was run). {first}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable torch file ({err})") from None


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/checkpoint.pt`` atomically: a crash leaves the previous one whole."""
    return save_atomic(state, Path(run_dir) / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The run's last checkpoint, or None when it has none yet."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return None
    ckpt = safe_load(path)
    for key in ("model", "stage", "step", "rng"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a wsseg checkpoint (missing {key!r})")
    return ckpt
