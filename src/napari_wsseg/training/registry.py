"""Model versions in a study: ``STUDY/models/<method>/<version>/``.

A version folder holds ``weights.pt`` (a state_dict only), ``job.json``,
``metrics.json`` (validation) and ``info.json`` (created, parent, method, config,
counts). ``weights.pt`` is written last, atomically: a folder without it is not a
finished version. Weights load with ``torch.load(weights_only=True)``; a file that
carries a pickled payload is refused (see :func:`checkpoint.safe_load`).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import torch

from napari_wsseg.io.atomic import atomic_write_text
from napari_wsseg.methods import get_method
from napari_wsseg.methods.base import Method
from napari_wsseg.training.checkpoint import safe_load, save_atomic
from napari_wsseg.training.configs import config_to_json, make_config
from napari_wsseg.training.spec import JobSpec
from napari_wsseg.training.versions import VERSION_RE, WEIGHTS, new_version_dir


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


def register_model(
    study_root: str | Path,
    spec: JobSpec,
    method: Method,
    model: torch.nn.Module,
    metrics: dict[str, float],
    counts: dict[str, int],
) -> Path:
    """Store a finished run as the next model version of ``spec.method`` in the study."""
    vdir = new_version_dir(models_dir(study_root) / method_key(spec.method, method))
    info = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "method": spec.method,
        "version": vdir.name,
        "parent": spec.parent or None,
        "config": config_to_json(method.config),
        "run_dir": str(Path(spec.out).resolve()),
        "seed": spec.seed,
        **counts,
    }
    atomic_write_text(vdir / "job.json", json.dumps(spec.to_json(), indent=1))
    atomic_write_text(vdir / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(vdir / "info.json", json.dumps(info, indent=1))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_atomic(state, vdir / WEIGHTS)
    return vdir


def method_key(name: str, method: Method) -> str:
    """Folder name of a method: its registry name, or its class's ``name`` when the job
    named it by import path."""
    if "." in name or ":" in name:
        return str(getattr(method, "name", "") or re.split(r"[.:]", name)[-1])
    return name


def read_info(version_dir: str | Path) -> dict[str, Any]:
    path = Path(version_dir) / "info.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not a model version (no info.json)") from None
    except ValueError as err:
        raise ValueError(f"{path}: unreadable info.json ({err})") from None


def load_model(
    version_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Method, torch.nn.Module]:
    """The method (with the version's config) and its model with the stored weights."""
    vdir = Path(version_dir)
    info = read_info(vdir)
    cls = get_method(info["method"])
    method = cls(make_config(cls.Config, info.get("config", {})))
    weights = safe_load(vdir / WEIGHTS, map_location=device)
    if not isinstance(weights, dict):
        raise ValueError(f"{vdir / WEIGHTS}: expected a state_dict, got {type(weights).__name__}")
    model = method.build_model()
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{vdir / WEIGHTS}: weights do not fit the model ({err})") from None
    model.to(device)
    model.eval()
    return method, model


def list_models(study_root: str | Path) -> list[dict[str, Any]]:
    """Every finished model version of the study, oldest first per method."""
    root = models_dir(study_root)
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for vdir in sorted(p for p in mdir.iterdir() if VERSION_RE.match(p.name)):
            if not (vdir / WEIGHTS).exists():
                continue
            try:
                info = read_info(vdir)
                metrics = json.loads((vdir / "metrics.json").read_text())
            except (OSError, ValueError):
                continue
            out.append(
                {
                    "method": mdir.name,
                    "version": vdir.name,
                    "path": str(vdir),
                    "created": info.get("created", ""),
                    "parent": info.get("parent"),
                    "metrics": metrics,
                    "info": info,
                }
            )
    return out
