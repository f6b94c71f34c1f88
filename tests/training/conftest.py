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
from toy_fixtures import _one_thread, toy_snapshot  # noqa: E402,F401
from wsseg_toymethod import TOY  # noqa: E402,F401


@pytest.fixture
def toy_env() -> dict[str, str]:
    """Environment for ``wsseg`` subprocesses that must import the toy method."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NAPARI_WSSEG_METHODS"] = wsseg_toymethod.TOY_ENV
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env
