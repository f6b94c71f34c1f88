"""Fixtures shared by the engine's and the reliability tests (imported by both
conftests): one intra-op thread, and the toy method's tiny snapshot on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import wsseg_toymethod


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every engine and reliability test: ``one_thread`` from tests/conftest.py."""


@pytest.fixture
def toy_snapshot(tmp_path: Path) -> Path:
    """Snapshot JSON of 16 tiny images (8 with a lesion, 4 with an expert mask)."""
    return wsseg_toymethod.make_toy_snapshot(tmp_path / "data", study=str(tmp_path / "study"))
