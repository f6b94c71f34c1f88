"""Fixtures shared by the method tests: ``one_thread`` (tests/conftest.py) with a fixed
torch seed. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def seeded_one_thread(one_thread):
    torch.manual_seed(0)
    yield
