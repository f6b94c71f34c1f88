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

from napari_wsseg.io import faults
from napari_wsseg.io.atomic import atomic_write, atomic_write_bytes
from napari_wsseg.io.base import InputError

CHECKPOINT = "checkpoint.pt"


class UnsafeCheckpointError(InputError):
    """A .pt file holds pickled objects beyond tensors and plain containers."""


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with a clear error for a refused file.

    Any failure (a pickled payload, text, a truncated zip) is an :class:`InputError`
    naming the file: torch's own messages (``KeyError: 101`` for a text file) say
    nothing to a user.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err).strip()
        first = text.splitlines()[0] if text else type(err).__name__
        if "weights_only" not in text and "Unsupported global" not in text:
            raise InputError(path, f"not a readable torch file ({first})") from None
        raise UnsafeCheckpointError(
            path,
            "refused to load: it carries a pickled Python object that is not a tensor "
            f"or a plain container (weights-only loading; nothing in it was run). {first}",
        ) from None
    except MemoryError:
        raise InputError(path, "not a torch file (claims more memory than exists)") from None
    except Exception as err:  # KeyError, RuntimeError, EOFError, zipfile errors...
        raise InputError(
            path, f"not a readable torch file ({type(err).__name__}: {err})"
        ) from None


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename over ``path``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/checkpoint.pt`` atomically: a crash leaves the previous one whole
    (and at most a temp file, which :func:`remove_temp_files` deletes on the next start)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    final = bool(state.get("done"))

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        if final:  # the temp file is complete, not yet renamed
            faults.point("checkpoint:final")

    return atomic_write(Path(run_dir) / CHECKPOINT, write)


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files a killed writer left in ``run_dir`` (``.<name>.*.tmp*``).

    Only the job writes its run folder, and only one job runs in it, so any such file
    at start-up belongs to a dead process.
    """
    gone = []
    for f in Path(run_dir).glob(".*.tmp*"):
        if f.is_file():
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


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
