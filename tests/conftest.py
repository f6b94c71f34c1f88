"""Shared fixtures: a small demo study built once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from napari_wsseg.phantoms.demo import make_study
from napari_wsseg.study import Study

DEMO_TEST_COUNTS = {"ct": 2, "mammo": 2, "slide": 2, "xray": 4, "skin": 4}
DEMO_TEST_EXPERT = {"ct": 1, "mammo": 1, "slide": 1, "xray": 2, "skin": 2}
DEMO_TEST_SIZES = {
    "ct": {"shape": (32, 64, 64)},
    "mammo": {"shape": (368, 240)},
    "slide": {"shape": (512, 512)},
}


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    """A small phantom study (ct 2, mammo 2, slide 2, xray 4, skin 4; one or two expert
    masks per modality, a reference mask for every image), opened read-mostly.

    Shared by the whole session: tests must not add images or masks to it; copy it
    (``shutil.copytree(demo_study.root, tmp_path / 's')``) to change anything.
    """
    root = tmp_path_factory.mktemp("demo") / "study"
    study = make_study(root, DEMO_TEST_COUNTS, DEMO_TEST_EXPERT, seed=0, sizes=DEMO_TEST_SIZES)
    yield study
    study.close()
