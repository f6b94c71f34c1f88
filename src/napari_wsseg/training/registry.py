"""Model versions in a study: ``STUDY/models/<method>/<version>/``.

A version folder holds ``weights.pt`` (a state_dict only), ``job.json``,
``metrics.json`` (validation) and ``info.json`` (created, parent, method, config,
counts, run_token). It is written in a staging folder and renamed onto ``vNNN`` whole
(see :mod:`napari_wsseg.training.versions`): a ``vNNN`` folder is complete or absent.
Weights load with ``torch.load(weights_only=True)``; a file that carries a pickled
payload is refused (see :func:`checkpoint.safe_load`). The method is looked up among
the registered ones only (``methods.get_method``): a folder can never name a module.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.io import faults
from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.methods import get_method
from napari_wsseg.methods.base import Method
from napari_wsseg.training import versions
from napari_wsseg.training.checkpoint import safe_load, save_atomic
from napari_wsseg.training.configs import config_to_json, make_config
from napari_wsseg.training.spec import JobSpec
from napari_wsseg.training.versions import (
    METHOD_DIR_RE,
    VERSION_RE,
    WEIGHTS,
    ModelFolderError,
    find_by_token,
    publish_version,
    scan_versions,
    stage_dir,
)


def models_dir(study_root: str | Path) -> Path:
    """The study's model folder (``Study.models_dir`` when the datastore offers it)."""
    try:
        from napari_wsseg.study.store import Study
    except ImportError:
        return Path(study_root) / "models"
    try:
        with Study.open(study_root) as st:
            return Path(st.models_dir)
    except (FileNotFoundError, ValueError, AttributeError):
        return Path(study_root) / "models"


def resolve_version(model: str, study: str | Path | None = None) -> Path:
    """A ``--model`` argument as a version folder: a folder as given or, with a study,
    ``METHOD`` (its current version), ``METHOD/vNNN`` or ``METHOD:vNNN`` (the names
    ``wsseg models`` prints). Anything else is an error that says what was looked for.
    """
    path = Path(model)
    if path.is_dir():
        return path
    method, _, version = model.replace(":", "/").partition("/")
    if study and METHOD_DIR_RE.match(method) and (not version or VERSION_RE.match(version)):
        from napari_wsseg.training.promotion import current_version, versions

        mdir = models_dir(study) / method
        if not versions(mdir):
            root = mdir.parent
            have = sorted(p.name for p in root.iterdir() if versions(p)) if root.is_dir() else []
            raise FileNotFoundError(
                f"--model {model}: study {study} has no finished {method!r} version "
                f"(methods with versions: {', '.join(have) or 'none'})"
            )
        name = version or current_version(mdir)
        if name and name in versions(mdir):
            return mdir / name
        raise FileNotFoundError(
            f"--model {model}: no finished version {name} of {method!r} in {mdir} "
            f"(finished: {', '.join(versions(mdir))}; `wsseg models {study}` lists them)"
        )
    hint = "METHOD or METHOD/vNNN of --study" if study else "METHOD/vNNN with --study"
    raise FileNotFoundError(
        f"--model {model}: not a model version folder (one holding info.json and "
        f"{WEIGHTS}); give a folder, or {hint} (`wsseg models STUDY` lists them)"
    )


def register_model(
    study_root: str | Path,
    spec: JobSpec,
    method: Method,
    model: torch.nn.Module,
    metrics: dict[str, float],
    counts: dict[str, int],
    token: str | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Store a finished run as the next model version of ``spec.method`` in the study.

    The version is staged and renamed into place whole (``versions.publish_version``);
    with ``token`` (the run's registration token) a version already registered by this
    run is returned instead of adding a second one. ``extra``: more files of the version
    (name -> text), e.g. its out-of-distribution statistics.
    """
    mdir = models_dir(study_root) / method_key(spec.method, method)
    if token is not None:
        found = find_by_token(mdir, token)
        if found is not None:
            return found
    token = token or uuid.uuid4().hex
    staged = stage_dir(mdir, token)
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": spec.method,
        "parent": spec.parent or None,
        "config": config_to_json(method.config),
        "run_dir": str(Path(spec.out).resolve()),
        "run_token": token,
        "seed": spec.seed,
        **counts,
    }
    try:
        atomic_write_text(staged / "job.json", json.dumps(spec.to_json(), indent=1))
        atomic_write_text(staged / "metrics.json", json.dumps(metrics, indent=1))
        atomic_write_text(staged / "info.json", json.dumps(info, indent=1))
        for name, text in (extra or {}).items():
            atomic_write_text(staged / name, text)
        faults.point("register:staged")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_atomic(state, staged / WEIGHTS)
        faults.point("register:weights")
        return publish_version(mdir, staged, token)
    except BaseException:  # an error (not a kill: a resume rebuilds that one)
        shutil.rmtree(staged, ignore_errors=True)
        raise


def method_key(name: str, method: Method) -> str:
    """Folder name of a method: its registered name (checked to be a plain name)."""
    if not METHOD_DIR_RE.match(name):
        raise ValueError(f"method name {name!r} cannot name a model folder")
    return name


def read_info(version_dir: str | Path) -> dict[str, Any]:
    """A version's ``info.json``, validated (see :func:`versions.read_info`)."""
    return versions.read_info(version_dir)


def load_model(
    version_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Method, torch.nn.Module]:
    """The method (with the version's config) and its model with the stored weights.

    Only registered methods load (``methods.get_method`` imports no module path);
    every problem of the folder is a :class:`ModelFolderError` naming the file.
    """
    vdir = Path(version_dir)
    info = versions.read_version(vdir)["info"]
    try:
        cls = get_method(info["method"])
    except KeyError as err:
        raise ModelFolderError(vdir / "info.json", f"refused: {err}") from None
    try:
        method = cls(make_config(cls.Config, info.get("config", {})))
    except (KeyError, TypeError, ValueError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ModelFolderError(vdir / "info.json", f"bad config ({msg})") from None
    weights = safe_load(vdir / WEIGHTS, map_location=device)
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise ModelFolderError(
            vdir / WEIGHTS,
            f"expected a state_dict (names to tensors), got {type(weights).__name__}",
        )
    model = method.build_model()
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ModelFolderError(vdir / WEIGHTS, f"weights do not fit the model ({err})") from None
    model.to(device)
    model.eval()
    return method, model


def list_models(study_root: str | Path) -> list[dict[str, Any]]:
    """Every finished model version of the study, oldest first per method (malformed
    folders are left out: :func:`scan_models` says which and why)."""
    return scan_models(study_root)[0]


def scan_models(study_root: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The study's finished versions and one line per malformed version folder."""
    return scan_versions(models_dir(study_root))
