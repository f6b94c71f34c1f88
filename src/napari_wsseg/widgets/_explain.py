"""Explain's work without Qt: list model versions, predict, put maps in the viewer."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_wsseg.methods import METHOD_MODALITY
from napari_wsseg.widgets import _case, _display
from napari_wsseg.widgets._layerdata import MAP_KEY, box_layer, map_layers, threshold_mask

if TYPE_CHECKING:
    import napari

    from napari_wsseg.io.base import ImageData
    from napari_wsseg.methods.base import Maps


def models_root(study: str | Path) -> str:
    return str(Path(study) / "models")


def ensure_dir(path: str) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def watch_dirs(root: str | None) -> list[str]:
    """Folders whose changes may mean a new model version: the models folder, each
    method's folder, and version folders still waiting for their ``weights.pt``."""
    if not root or not Path(root).is_dir():
        return []
    out = [str(root)]
    for mdir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        out.append(str(mdir))
        out += [str(v) for v in mdir.iterdir() if v.is_dir() and not (v / "weights.pt").exists()]
    return out


def model_versions(study: str | Path, modality: str) -> list[dict[str, Any]]:
    """Finished model versions for ``modality`` in the study, newest first; a malformed
    version folder is left out (``versions.read_version`` says why) and never hides
    the others."""
    from napari_wsseg.training.versions import VERSION_RE, ModelFolderError, read_version

    out = []
    for method, mod in METHOD_MODALITY.items():
        if mod != modality:
            continue
        mdir = Path(models_root(study)) / method
        if not mdir.is_dir():
            continue
        for vdir in sorted(mdir.iterdir(), reverse=True):
            if not VERSION_RE.match(vdir.name) or not (vdir / "weights.pt").exists():
                continue  # a staging folder, or broken
            try:
                found = read_version(vdir)
            except ModelFolderError:
                continue
            out.append(
                {
                    "method": method,
                    "version": vdir.name,
                    "path": str(vdir),
                    "metrics": found["metrics"],
                    "info": found["info"],
                    "title": f"{method} {vdir.name}",
                }
            )
    return out


def suggest_next(study_root: str | Path, modality: str, n: int = 10) -> list[int]:
    """Image ids to annotate next, most useful first, by the newest model version of
    ``modality`` (the engine's ``suggest``); runs in a worker thread."""
    from napari_wsseg.evaluation.suggest import suggest

    versions = model_versions(study_root, modality)
    if not versions:
        raise ValueError(f"no model version for {modality} in {study_root}: train one first")
    return [int(r["image_id"]) for r in suggest(versions[0]["path"], study_root, n)]


def describe(entry: dict[str, Any]) -> str:
    """One line of validation metrics and provenance for the model picker."""
    metrics = entry.get("metrics", {})
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    parts = [f"{k}={v:.3f}" for k, v in list(flat.items())[:6]]
    info = entry.get("info", {})
    when = info.get("created", "")
    return f"{entry['title']} · {when}\nvalidation: {', '.join(parts) or 'n/a'}"


def failure_text(err: BaseException, entry: dict | None, key: tuple | None) -> str:
    """What failed, on which case and model version, and what to do about it."""
    where = f"image {key[1]} of {key[0]}" if key else "the case"
    model = entry["path"] if entry else "no model version"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    hint = "check the image opens and the model version fits its modality"
    if "weights_only" in str(err) or "pickle" in str(err).lower():
        text = f"{model}/weights.pt cannot be loaded safely"
        hint = "it was written by another version: retrain it or reinstall the default models"
    elif isinstance(err, MemoryError) or "out of memory" in str(err).lower():
        hint = "not enough memory: close other cases or run on a smaller image"
    return f"Explain failed on {where} with {model}: {text}. What to do: {hint}."


@lru_cache(maxsize=4)
def _load(path: str, device: str):
    from napari_wsseg.training.registry import load_model

    return load_model(path, device=device)


def predict(version_dir: str, image: ImageData, live: Any = None) -> Maps:
    """Load (cached) and run one model version on one image, on the GPU when there is
    one; runs in a worker thread. ``live`` (a ``_live.LiveRun``) gets the progress and
    partial maps of streaming predictors and can cancel them."""
    import torch

    from napari_wsseg.methods.progress import reporting

    device = "cuda" if torch.cuda.is_available() else "cpu"
    method, model = _load(str(version_dir), device)
    model.eval()
    cancel = live.cancelled if live is not None else None
    with torch.inference_mode(), reporting(live, cancel=cancel):
        return method.predict(model, image)


def explain_image(
    version_dir: str, image: ImageData, study: str | Path, modality: str, live: Any = None
) -> tuple[Maps, dict[str, Any]]:
    """Worker: :func:`predict` (``live`` as there), and the image's out-of-distribution
    check against the statistics kept with the version (fitted on the study the first
    time)."""
    from napari_wsseg.training import ood

    maps = predict(version_dir, image, live)
    try:
        report = ood.check(ood.ensure(version_dir, study, modality), image)
    except (OSError, ValueError) as err:
        report = {"ood": None, "message": f"no out-of-distribution check ({err})"}
    return maps, report


def mark_ood(viewer: napari.viewer.Viewer, report: dict[str, Any]) -> str:
    """Keep an out-of-distribution warning on the case's image layer (the legend
    shows it); returns the line for the probabilities ("" when in distribution)."""
    ood = bool(report.get("ood"))
    for layer in _case.case_layers(viewer):
        if layer.metadata.get("wsseg_role") == "image":
            layer.metadata["wsseg_warning"] = report.get("short", "") if ood else ""
    _display.show_legend(viewer)
    return f"⚠ {report['message']}" if ood else report.get("message", "")


def show_maps(viewer: napari.viewer.Viewer, maps: Maps, entry: dict, case: dict) -> None:
    """Replace this case's overlays with ``maps``; the mask goes to the Labels layer."""
    image = case["image"]
    source = f"{case['study']}#{case['image_id']}"
    for layer in list(viewer.layers):
        if MAP_KEY in layer.metadata:
            viewer.layers.remove(layer)
    layers = map_layers(maps, image, entry["method"], source)
    boxes = box_layer(maps, image, entry["method"], source)
    meta_case = {_case.CASE_KEY: {k: case[k] for k in ("study", "image_id", "modality")}}
    for data, kwargs, _kind in layers:
        kwargs["metadata"].update(meta_case)
        viewer.add_image(data, **kwargs)
    if boxes is not None:
        data, kwargs, _kind = boxes
        kwargs["metadata"].update(meta_case)
        viewer.add_shapes(data, **kwargs)
    if maps.mask and maps.mask in maps.maps and not _case.has_unsaved_edits(viewer):
        classes = maps.classes.get(maps.mask, [])
        data = threshold_mask(
            maps.maps[maps.mask], maps.threshold, classes, stack=case["modality"] == "xray"
        )
        layer = _case.show_mask(
            viewer,
            data,
            image,
            parent=None,
            source="predicted",
            prob_layer=f"{maps.mask} [{entry['method']}]",
        )
        layer.metadata["wsseg_model"] = entry["path"]
        layer.metadata["wsseg_threshold"] = maps.threshold
        layer.metadata["wsseg_classes"] = classes
    elif maps.mask:
        viewer.status = "mask has unsaved edits: prediction shown as maps only"
    _display.style_case(viewer)
