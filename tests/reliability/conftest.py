"""Fixtures of the reliability tests: the engine's toy method, a small study."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TRAINING_TESTS = Path(__file__).resolve().parents[1] / "training"
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))

import wsseg_toymethod  # noqa: E402  (registers the method "toy")


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
