"""``--device cpu|cuda`` for the method benchmarks (issue 15): one flag, one resolver,
one batch mover, so every regime/claim script moves model and data the same way.

The default is ``cpu``: every number in docs/benchmarks.md so far was measured on the
2-core CPU (no GPU was lent); ``cuda`` is for re-running a claim at a GPU-sized budget.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from napari_wsseg.training.distributed import resolve_device
from napari_wsseg.training.loop import to_device


def add_device_arg(ap: argparse.ArgumentParser) -> None:
    """Add ``--device`` (cpu | cuda, default cpu) to a benchmark's parser."""
    ap.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where models and batches live (default cpu; cuda needs a GPU)",
    )


def device_of(name: str) -> torch.device:
    """The torch device for ``--device``; ``cuda`` without a GPU exits with a clear error."""
    try:
        return resolve_device(name)
    except ValueError as e:
        raise SystemExit(f"--device {name}: {e}") from None


def to(batch: Any, device: torch.device | str) -> Any:
    """Every tensor of a batch (nested dicts/lists) on ``device``."""
    return to_device(batch, torch.device(device), channels_last=False)
