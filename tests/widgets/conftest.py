"""Fixtures of the widget tests: study copies and tiny trained model versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_sets import TINY  # tests/ is on sys.path (the rootdir conftest)


def train_args(study: Path, method: str, out: Path, steps: int) -> list[str]:
    """``wsseg train`` arguments for a tiny job."""
    args = ["--method", method, "--study", str(study), "--out", str(out)]
    args += ["--steps", str(steps), "--device", "cpu"]
    for key, value in TINY[method].items():
        args += ["--set", f"{key}={value}"]
    return args


@pytest.fixture(autouse=True)
def _no_layers_made_ahead(request, monkeypatch) -> None:
    """The browser makes spare layers ahead in idle time (``qt_prepare``): off in the
    widget tests but those that ask for ``made_ahead``, so layers do not appear in the
    others while they wait for something else."""
    if "made_ahead" not in request.fixturenames:
        from napari_wsseg.widgets import qt_prepare

        monkeypatch.setattr(qt_prepare, "ENABLED", False)


@pytest.fixture
def made_ahead() -> bool:
    """Asks for the browser's spare layers made ahead (on, as in the product)."""
    return True


@pytest.fixture
def tiny_sets() -> dict[str, dict[str, str]]:
    """The tiny ``--set`` values per method."""
    return TINY


@pytest.fixture
def study_copy(demo_study, tmp_path) -> Path:
    """A private copy of the session's demo study (tests may write to it)."""
    return Path(shutil.copytree(demo_study.root, tmp_path / "study"))


@pytest.fixture(scope="session")
def trained_root(demo_study, tmp_path_factory) -> Path:
    """The demo study with one tiny model version of manifold (skin) and glam (mammo),
    trained in this process through the CLI entry point."""
    import torch

    from napari_wsseg.cli import main

    root = Path(shutil.copytree(demo_study.root, tmp_path_factory.mktemp("trained") / "s"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for method in ("manifold", "glam"):
            out = root.parent / f"run-{method}"
            assert main(["train", *train_args(root, method, out, 2)]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.fixture
def trained_copy(trained_root, tmp_path) -> Path:
    """A private copy of the study with trained models."""
    return Path(shutil.copytree(trained_root, tmp_path / "study"))
