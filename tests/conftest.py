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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for the test (results do not depend on the core count)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def pytest_collection_modifyitems(config, items) -> None:
    """Tests that start Orthanc carry the ``pacs`` marker (``-m 'not pacs'`` leaves them out)."""
    for item in items:
        if "orthanc" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pacs)


@pytest.fixture
def orthanc(tmp_path, monkeypatch):
    """A running Orthanc with DICOMweb, loaded by ``orthanc_server.load_test_data``;
    ``WSSEG_CONFIG`` points at a client config for it. Yields (server, uids)."""
    from orthanc_server import (
        PASSWORD,
        OrthancServer,
        dicomweb_plugin,
        load_test_data,
        orthanc_binary,
        write_client_config,
    )

    if orthanc_binary() is None or dicomweb_plugin() is None:
        # a failure, not a skip: the PACS tests run against the real server, and a
        # suite that quietly left them out would read as green (README: test set-up)
        pytest.fail(
            "Orthanc with its DICOMweb plugin is not installed: `apt-get install orthanc "
            "orthanc-dicomweb` (bash .ci/run installs them), or deselect the PACS tests "
            "with `-m 'not pacs'` and say so",
            pytrace=False,
        )
    server = OrthancServer(tmp_path / "orthanc")
    server.start()
    try:
        uids = load_test_data(server, tmp_path / "pacs-data")
        config = write_client_config(tmp_path / "wsseg.yaml", server)
        monkeypatch.setenv("WSSEG_CONFIG", str(config))
        monkeypatch.setenv("WSSEG_TEST_PACS_PASSWORD", PASSWORD)
        yield server, uids
    finally:
        server.stop()
