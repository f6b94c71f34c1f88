"""Fixtures shared by the method tests: one intra-op thread (results do not depend on
the machine's core count), with or without a fixed torch seed. Modules opt in with
``pytestmark = pytest.mark.usefixtures(...)``."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def seeded_one_thread(one_thread):
    torch.manual_seed(0)
    yield
