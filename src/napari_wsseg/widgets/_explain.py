"""Explain's work without Qt: list model versions, predict, put maps in the viewer."""

from __future__ import annotations

import json
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


def _read_json(path: Path) -> dict:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_versions(study: str | Path, modality: str) -> list[dict[str, Any]]:
    """Finished model versions for ``modality`` in the study, newest first; a malformed
    version folder is left out (``versions.read_version`` says why) and never hides
    the others.

    Each entry says whether it is the method's ``current`` (promoted) version, and
    carries its held-out scores: the study's (``held_out.json``) or, for a shipped
    default not scored on this study yet, those in its ``info.json``.
    """
    from napari_wsseg.training.promotion import current_version
    from napari_wsseg.training.versions import VERSION_RE, ModelFolderError, read_version

    out = []
    for method, mod in METHOD_MODALITY.items():
        if mod != modality:
            continue
        mdir = Path(models_root(study)) / method
        if not mdir.is_dir():
            continue
        try:
            current = current_version(mdir)
        except ValueError:  # a broken pointer file: no version is current until re-promoted
            current = None
        for vdir in sorted(mdir.iterdir(), reverse=True):
            if not VERSION_RE.match(vdir.name) or not (vdir / "weights.pt").exists():
                continue  # a staging folder, or broken
            try:
                found = read_version(vdir)
            except ModelFolderError:
                continue
            tag = " (current)" if vdir.name == current else ""
            out.append(
                {
                    "method": method,
                    "version": vdir.name,
                    "path": str(vdir),
                    "metrics": found["metrics"],
                    "info": found["info"],
                    "held_out": _read_json(vdir / "held_out.json"),
                    "current": vdir.name == current,
                    "title": f"{method} {vdir.name}{tag}",
                }
            )
    return out


def current_entry(entries: list[dict[str, Any]], method: str | None = None) -> dict | None:
    """The current (promoted) version among ``entries`` (of ``method`` if given)."""
    return next((e for e in entries if e["current"] and method in (None, e["method"])), None)


def suggest_rows(study_root: str | Path, modality: str, n: int = 10) -> list[dict]:
    """Cases to annotate next, most useful first, with their uncertainty, by the current
    version of ``modality``'s newest-trained method; runs in a worker thread. Scores are
    cached per version (its job has usually computed them), so this is mostly a read."""
    from napari_wsseg.evaluation.suggest import suggest

    versions = model_versions(study_root, modality)
    if not versions:
        raise ValueError(f"no model version for {modality} in {study_root}: train one first")
    entry = current_entry(versions, versions[0]["method"]) or versions[0]
    return [{**r, "version": entry["title"]} for r in suggest(entry["path"], study_root, n)]


def suggest_next(study_root: str | Path, modality: str, n: int = 10) -> list[int]:
    """Image ids of :func:`suggest_rows` (the browser's "suggested" column)."""
    return [int(r["image_id"]) for r in suggest_rows(study_root, modality, n)]


def suggestion_text(rank: int, row: dict) -> str:
    """One line of the ranked list: the case and why (its uncertainty)."""
    return (
        f"{rank}. image {row['image_id']} {Path(row['path']).name} · uncertainty "
        f"{row['score']:.3f} (entropy {row['entropy']:.2f}, "
        f"disagreement {row['disagreement']:.2f})"
    )


def held_out_line(entry: dict[str, Any]) -> str:
    """The held-out scores of a version, saying where they come from."""
    from napari_wsseg.evaluation.heldout import shipped_summary

    ho = entry.get("held_out") or {}
    summ, where = ho.get("summary"), f"study held-out, {len(ho.get('ids', []))} images"
    if not summ:
        summ = shipped_summary(entry.get("info", {}))
        where = f"shipped held-out set, {summ['n_images']} images" if summ else ""
    if not summ:
        return "held-out: not scored yet"
    parts = [f"{k}={v:.3f}" for k, v in summ.items() if k != "n_images" and v is not None]
    return f"held-out ({where}): {', '.join(parts) or 'n/a'}"


def describe(entry: dict[str, Any]) -> str:
    """Validation metrics, held-out scores and provenance for the model picker."""
    metrics = entry.get("metrics", {})
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    parts = [f"{k}={v:.3f}" for k, v in list(flat.items())[:6]]
    info = entry.get("info", {})
    when = info.get("created", "")
    parent = Path(info["parent"]).name if info.get("parent") else "none"
    lines = [f"{entry['title']} · {when} · parent {parent}", held_out_line(entry)]
    if parts:
        lines.append(f"validation: {', '.join(parts)}")
    return "\n".join(lines)


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


STORED_SOURCES = ("expert", "corrected")
PREDICTION_KEY = "wsseg_prediction"  # a predicted mask shown beside the stored one
COMPARE_KEY = "wsseg_compare"  # map layers of a version shown beside the current one


def show_maps(
    viewer: napari.viewer.Viewer, maps: Maps, entry: dict, case: dict, compare: bool = False
) -> None:
    """Show ``maps`` of ``entry`` on the case.

    Normally they replace the case's overlays. With ``compare`` they are added as
    separate layers named after the version (``... [method v002]``), next to those of
    the current version. The mask goes to the Labels layer only when the case has no
    stored (expert or corrected) mask and no unsaved edits: otherwise, and always with
    ``compare``, the prediction gets its own Labels layer and the stored mask stays.
    """
    image = case["image"]
    source = f"{case['study']}#{case['image_id']}"
    label = f"{entry['method']} {entry['version']}" if compare else entry["method"]
    for layer in list(viewer.layers):
        if MAP_KEY not in layer.metadata and PREDICTION_KEY not in layer.metadata:
            continue
        mine = layer.metadata.get(COMPARE_KEY) == entry["path"]
        if mine or (not compare and not layer.metadata.get(COMPARE_KEY)):
            viewer.layers.remove(layer)
    layers = map_layers(maps, image, label, source)
    boxes = box_layer(maps, image, label, source)
    meta_case = {_case.CASE_KEY: {k: case[k] for k in ("study", "image_id", "modality")}}
    if compare:
        meta_case[COMPARE_KEY] = entry["path"]
    for data, kwargs, _kind in layers:
        kwargs["metadata"].update(meta_case)
        viewer.add_image(data, **kwargs)
    if boxes is not None:
        data, kwargs, _kind = boxes
        kwargs["metadata"].update(meta_case)
        viewer.add_shapes(data, **kwargs)
    _show_mask(viewer, maps, entry, case, label, meta_case, compare)
    _display.style_case(viewer)


def _show_mask(viewer, maps: Maps, entry: dict, case: dict, label, meta_case, compare) -> None:
    """The predicted mask: in the Labels layer, or beside a stored mask as its own."""
    image = case["image"]
    if not maps.mask or maps.mask not in maps.maps:
        return
    classes = maps.classes.get(maps.mask, [])
    data = threshold_mask(
        maps.maps[maps.mask], maps.threshold, classes, stack=case["modality"] == "xray"
    )
    stored = _case.mask_layer(viewer)
    keeps = stored is not None and (
        stored.metadata.get("wsseg_source") in STORED_SOURCES or _case.has_unsaved_edits(viewer)
    )
    if compare or keeps:
        _prediction_layer(viewer, data, image, entry, label, maps, meta_case)
        if keeps and not compare:
            viewer.status = "the case has a stored mask: prediction shown as its own layer"
        return
    layer = _case.show_mask(
        viewer, data, image, parent=None, source="predicted",
        prob_layer=f"{maps.mask} [{entry['method']}]",
    )  # fmt: skip
    layer.metadata["wsseg_model"] = entry["path"]
    layer.metadata["wsseg_threshold"] = maps.threshold
    layer.metadata["wsseg_classes"] = classes


def _prediction_layer(viewer, data, image, entry, label, maps, meta_case) -> None:
    """The predicted mask as a Labels layer of its own (a map layer: replaced on refresh)."""
    from napari_wsseg.methods.base import Grid
    from napari_wsseg.widgets._layerdata import placement

    nd = image.ndim
    extra = data.ndim - nd
    factor = tuple(i / m for i, m in zip(image.spatial_shape, data.shape[-nd:]))
    grid = Grid.downsampled(factor)
    scale, translate = placement(image, grid.scale, grid.translate)
    meta = {
        **meta_case,
        PREDICTION_KEY: entry["path"],
        "wsseg_model": entry["path"],
        "wsseg_threshold": maps.threshold,
        "wsseg_source": "predicted",
        "wsseg_role": "prediction",
    }
    viewer.add_labels(
        data, name=f"prediction [{label}]", metadata=meta, opacity=0.4,
        scale=(1.0,) * extra + tuple(scale), translate=(0.0,) * extra + tuple(translate),
    )  # fmt: skip
