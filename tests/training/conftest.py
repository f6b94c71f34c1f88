"""Fixtures of the engine's tests: the toy method and a tiny snapshot on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import wsseg_toymethod  # noqa: E402
from wsseg_toymethod import TOY  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def toy_snapshot(tmp_path: Path) -> Path:
    """Snapshot JSON of 16 tiny images (8 with a lesion, 4 with an expert mask)."""
    return wsseg_toymethod.make_toy_snapshot(tmp_path / "data", study=str(tmp_path / "study"))


@pytest.fixture
def toy_env() -> dict[str, str]:
    """Environment for ``wsseg`` subprocesses that must import the toy method."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NAPARI_WSSEG_METHODS"] = wsseg_toymethod.TOY_ENV
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env
