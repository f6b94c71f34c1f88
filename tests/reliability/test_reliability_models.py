"""Model folders and job files as an adversary writes them: no code runs from them,
every bad one gets an error naming the file, and one bad version hides no other."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import wsseg_toymethod
from wsseg_toymethod import TOY

from napari_wsseg.cli import main
from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.io.base import InputError
from napari_wsseg.methods import ENV_VAR, UnknownMethodError, get_method
from napari_wsseg.training.registry import load_model, scan_models
from napari_wsseg.training.runner import train
from napari_wsseg.training.spec import JobSpec
from napari_wsseg.training.versions import ModelFolderError, read_version

EVIL = "import pathlib; pathlib.Path('RAN').write_text('code from the model folder ran')\n"


@pytest.fixture
def version(toy_snapshot, tmp_path) -> Path:
    spec = JobSpec(
        method=TOY,
        out=str(tmp_path / "run"),
        study=str(tmp_path / "study"),
        snapshot=str(toy_snapshot),
        config={"steps": [1, 1]},
    )
    return train(spec).version_dir


def test_reliability_get_method_never_imports_a_module_path(tmp_path, monkeypatch):
    (tmp_path / "evilmod.py").write_text(EVIL + "METHOD = object\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("this", "evilmod", "evilmod:METHOD", "os.path", "napari_wsseg.methods.base"):
        with pytest.raises(UnknownMethodError, match="unknown method"):
            get_method(name)
    assert "this" not in sys.modules and "evilmod" not in sys.modules
    assert not (tmp_path / "RAN").exists()


def test_reliability_model_folder_naming_a_module_is_refused_by_the_cli(version, tmp_path):
    name = "evilmod:METHOD"
    info = json.loads((version / "info.json").read_text())
    (version / "info.json").write_text(json.dumps({**info, "method": name}))
    (tmp_path / "evilmod.py").write_text(EVIL + "METHOD = object\n")
    image = tmp_path / "x.png"
    import imageio.v3 as iio
    import numpy as np

    iio.imwrite(image, np.zeros((8, 8), np.uint8))
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_wsseg.cli", "predict", str(image)]
        + ["--model", str(version), "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{version / 'info.json'}: refused: unknown method {name!r}" in proc.stderr
    assert "Traceback" not in proc.stderr and "Zen of Python" not in proc.stdout
    assert not (tmp_path / "RAN").exists()


def _break(vdir: Path, name: str, text: str) -> None:
    (vdir / name).write_text(text)


CASES = [
    ("weights.pt", "just some text\n", r"weights.pt: not a readable torch file"),
    ("info.json", "[1, 2]", r"info.json: info.json must be a JSON object, got list"),
    ("info.json", '{"config": {}}', r"info.json: 'method' must be a method name, got None"),
    ("info.json", '{"method": "toy", "config": 5}', r"info.json: 'config' must be an object"),
    ("info.json", "{not json", r"info.json: unreadable info.json"),
    ("metrics.json", "[1]", r"metrics.json: metrics.json must be a JSON object, got list"),
    ("metrics.json", '"x"', r"metrics.json: metrics.json must be a JSON object, got str"),
]


@pytest.mark.parametrize(("name", "text", "message"), CASES)
def test_reliability_bad_model_folder_is_a_clear_error_and_hides_no_other(
    name, text, message, version, capsys
):
    good = version.parent / "v002"
    shutil.copytree(version, good)
    _break(version, name, text)
    with pytest.raises(InputError, match=message):
        if name == "metrics.json":
            read_version(version)
        else:
            load_model(version)
    study = version.parents[2]
    rows, problems = scan_models(study)
    if name != "weights.pt":  # a text weights file is only found when loaded
        assert [r["version"] for r in rows] == ["v002"]
        assert len(problems) == 1 and str(version) in problems[0]
    assert main(["models", str(study)]) == 0
    out = capsys.readouterr()
    assert "toy/v002" in out.out and "Traceback" not in out.err
    if name != "weights.pt":
        assert f"skipped {version}" in out.err
    assert main(["predict", str(study), "--model", str(version), "--out", "/nonexistent/x"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_reliability_load_model_of_an_incomplete_folder_is_a_clear_error(version):
    (version / "weights.pt").unlink()
    with pytest.raises(ModelFolderError, match=r"v001: incomplete model version"):
        load_model(version)


def test_reliability_explain_model_list_skips_a_bad_version(version):
    from napari_wsseg.methods import METHOD_MODALITY
    from napari_wsseg.widgets import _explain

    shutil.copytree(version, version.parent / "v002")
    (version / "metrics.json").write_text('"x"')
    METHOD_MODALITY["toy"] = "skin"
    try:
        found = _explain.model_versions(version.parents[2], "skin")
    finally:
        del METHOD_MODALITY["toy"]
    assert [f["version"] for f in found] == ["v002"]
    assert _explain.describe(found[0]).startswith("toy v002")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("steps", "abc", r"'steps' must be an integer >= 0 or null, got 'abc'"),
        ("checkpoint_every", "x", r"'checkpoint_every' must be an integer >= 0, got 'x'"),
        ("config", 5, r"'config' must be an object of key: value, got 5"),
        ("seed", 1.5, r"'seed' must be an integer"),
        ("register", "no", r"'register' must be true or false"),
    ],
)
def test_reliability_job_file_with_a_bad_field_names_file_and_key(key, value, message, tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"method": TOY, "out": str(tmp_path / "r"), key: value}))
    with pytest.raises(ValueError, match=rf"{job}: {message}"):
        JobSpec.load(job)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_reliability_atomic_write_gives_the_umask_mode(umask, tmp_path):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == 0o666 & ~umask


def test_reliability_registered_toy_method_resolves():
    assert get_method(TOY) is wsseg_toymethod.ToyMethod


def test_reliability_methods_installed_by_entry_point_or_env_resolve(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "wsseg_fake_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wsseg-fake\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[napari_wsseg.methods]\nfaketoy = wsseg_toymethod:ToyMethod\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert get_method("faketoy") is wsseg_toymethod.ToyMethod
    monkeypatch.setenv(ENV_VAR, "envtoy=wsseg_toymethod:ToyMethod")
    assert get_method("envtoy") is wsseg_toymethod.ToyMethod
    monkeypatch.setenv(ENV_VAR, "broken=no_such_module_here:X")
    with pytest.raises(UnknownMethodError, match="'broken' is registered as .* does not import"):
        get_method("broken")
