"""The open case in the viewer: its layers carry the study and image id in metadata.

No dock holds a reference to another: each finds the case (study root, image id,
modality, ImageData) from the layers, so the docks stay independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.methods.base import Grid
from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets._layerdata import CASE_KEY, case_metadata, mask_to_layer, placement

if TYPE_CHECKING:
    import napari

MASK_LAYER = "mask"
IMAGE_EXTS = {".nii", ".gz", ".dcm", ".tif", ".tiff", ".svs", ".png", ".jpg", ".jpeg"}


def open_or_create_study(root: str | Path):
    """Open the study at ``root``, creating it when the folder is new or empty."""
    from napari_wsseg.study.store import Study

    root = Path(root)
    if (root / "catalog.sqlite").exists():
        return Study.open(root)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root}: not a study (no catalog.sqlite) and not empty")
    return Study.create(root)


def import_into(study, paths: list[str]) -> None:
    """CSV files are label tables; anything else is added with the modality read from it."""
    for p in map(Path, paths):
        if p.suffix.lower() == ".csv":
            study.import_csv(p)
        else:
            study.add_image(p, None)


def import_folder(study, folder: str | Path, series: str | int | None = None) -> tuple[int, str]:
    """Add a DICOM folder's main series (or ``series``); returns its id and a line for
    the user naming the series imported and the ones left out."""
    image_id = study.add_image(Path(folder), None, series=series)
    return image_id, import_note(study.image(image_id))


def _series_name(info: dict[str, Any]) -> str:
    n = info.get("n_slices") or 0
    name = info.get("label") or info.get("description") or info.get("uid") or "?"
    return f"{name!r} ({n} slice{'s' if n != 1 else ''})"


def import_note(rec) -> str:
    """What an import brought in: the series of a DICOM folder and the others left out."""
    text = f"imported {Path(rec.relpath).name} as {rec.modality} (id {rec.id})"
    chosen = rec.meta.get("series")
    if not chosen:
        return text
    text += f": series {_series_name(chosen)}"
    others = rec.meta.get("other_series") or []
    if others:
        names = ", ".join(_series_name(o) for o in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        text += f"; {len(others)} other series left out: {names}{more}"
    return text


def error_text(path: str | Path, err: BaseException) -> str:
    """An error's message, starting with ``path`` unless it already names it."""
    text = str(err)
    return text if str(path) in text else f"{path}: {text}"


def vocabulary(modality: str) -> tuple[str, ...]:
    return labels_for(modality)


def format_labels(labels: dict[str, float]) -> str:
    on = [k for k, v in labels.items() if v and float(v) > 0]
    return ", ".join(on) if on else "negative"


def filter_records(records: list, modality: str, text: str) -> list:
    """Records of one modality ("all" for every one) whose name or labels contain ``text``."""
    text = text.strip().lower()
    out = []
    for rec in records:
        if modality != "all" and rec.modality != modality:
            continue
        hay = f"{Path(rec.relpath).name} {format_labels(rec.labels)}".lower()
        if text and text not in hay:
            continue
        out.append(rec)
    return out


def case_layers(viewer: napari.viewer.Viewer) -> list:
    return [ly for ly in viewer.layers if CASE_KEY in ly.metadata]


def current_case(viewer: napari.viewer.Viewer) -> dict[str, Any] | None:
    """Study root, image id, modality and ImageData of the case on screen (or None)."""
    for layer in case_layers(viewer):
        if layer.metadata.get("wsseg_role") == "image":
            return {**layer.metadata[CASE_KEY], "image": layer.metadata["wsseg_image"]}
    return None


def mask_layer(viewer: napari.viewer.Viewer):
    for layer in case_layers(viewer):
        if layer.metadata.get("wsseg_role") == "mask":
            return layer
    return None


def has_unsaved_edits(viewer: napari.viewer.Viewer) -> bool:
    layer = mask_layer(viewer)
    return bool(layer is not None and layer.metadata.get("wsseg_dirty"))


def show_case(viewer: napari.viewer.Viewer, study, image_id: int) -> None:
    """Replace the viewer's case layers with image ``image_id`` and its latest mask."""
    from napari_wsseg.io import read_image, read_mask

    rec = study.image(image_id)
    image = read_image(rec.path, modality=rec.modality)
    for layer in case_layers(viewer):
        viewer.layers.remove(layer)
    meta = case_metadata(study.root, image_id, rec.modality, image)
    kw = image.layer_kwargs()
    kw["metadata"] = {**kw["metadata"], **meta, "wsseg_role": "image"}
    viewer.add_image(image.data, name=Path(rec.relpath).name, **kw)
    latest = study.latest_accepted_mask(image_id)
    if latest is not None:
        data = mask_to_layer(read_mask(latest.path), rec.modality)
        show_mask(viewer, data, image, parent=latest.id, source=latest.source)
    viewer.reset_view()


def show_mask(
    viewer: napari.viewer.Viewer,
    data: np.ndarray,
    image,
    parent: int | None,
    source: str,
    prob_layer: str | None = None,
) -> Any:
    """Put ``data`` in the case's Labels layer (created when missing), marked clean."""
    case = current_case(viewer)
    layer = mask_layer(viewer)
    nd = image.ndim
    extra = data.ndim - nd
    # A mask coarser than the image (slides: one pixel per tile) is stretched over it.
    factor = tuple(i / m for i, m in zip(image.spatial_shape, data.shape[-nd:]))
    grid = Grid.downsampled(factor)
    scale, translate = placement(image, grid.scale, grid.translate)
    scale, translate = (1.0,) * extra + scale, (0.0,) * extra + translate
    meta = {
        CASE_KEY: case and {k: case[k] for k in ("study", "image_id", "modality")},
        "wsseg_image": image,
        "wsseg_role": "mask",
        "wsseg_parent": parent,
        "wsseg_source": source,
        "wsseg_prob_layer": prob_layer,
        "wsseg_dirty": False,
    }
    if layer is not None and layer.data.shape == data.shape:
        layer.data = data
        layer.metadata = {**layer.metadata, **meta}
    else:
        if layer is not None:
            viewer.layers.remove(layer)
        layer = viewer.add_labels(
            data, name=MASK_LAYER, scale=scale, translate=translate, metadata=meta, opacity=0.5
        )
    layer.metadata["wsseg_dirty"] = False
    if not layer.metadata.get("wsseg_watched"):
        layer.events.paint.connect(lambda _e, ly=layer: mark_dirty(ly))
        layer.metadata["wsseg_watched"] = True
    return layer


def mark_dirty(layer) -> None:
    """Flag the mask as edited since it was shown or saved (painting calls this)."""
    layer.metadata["wsseg_dirty"] = True


def suggest_next(study_root: str | Path, modality: str, n: int = 10) -> list[int]:
    """Image ids to annotate next, most useful first, by the newest model version of
    ``modality`` (the engine's ``suggest``); runs in a worker thread."""
    from napari_wsseg.evaluation.suggest import suggest
    from napari_wsseg.widgets._explain import model_versions

    versions = model_versions(study_root, modality)
    if not versions:
        raise ValueError(f"no model version for {modality} in {study_root}: train one first")
    return [int(r["image_id"]) for r in suggest(versions[0]["path"], study_root, n)]
