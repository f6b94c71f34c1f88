"""Fixtures of the reliability tests: the engine's toy method, a small study."""

from __future__ import annotations

import sys
from pathlib import Path

TRAINING_TESTS = Path(__file__).resolve().parents[1] / "training"
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))

# toy_fixtures imports wsseg_toymethod, which registers the method "toy"
from toy_fixtures import _one_thread, toy_snapshot  # noqa: E402,F401
