"""The open case in the viewer: its layers carry the study and image id in metadata.

No dock holds a reference to another: each finds the case (study root, image id,
modality, ImageData) from the layers, so the docks stay independent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wsseg.methods.base import Grid
from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets import _slots
from napari_wsseg.widgets._layerdata import (
    CASE_KEY,
    MAP_KEY,
    mask_to_layer,
    placement,
)

if TYPE_CHECKING:
    import napari

MASK_LAYER = "mask"
EMPTY_MASK_LAYER = "mask (none stored: paint to draw one)"
KEPT_KEYS = ("wsseg_watched",)  # what a reused mask layer keeps of the last case's metadata
SMALL_LEVEL = 2048  # a pyramid level at most this wide is read whole when a case opens
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


def import_into(study, paths: list[str], modality: str | None = None) -> list[int]:
    """CSV files are label tables; anything else is added with ``modality``, or the
    modality read from it. Returns the new image ids."""
    ids: list[int] = []
    for p in map(Path, paths):
        if p.suffix.lower() == ".csv":
            ids += study.import_csv(p)
        else:
            ids.append(study.add_image(p, modality))
    return ids


def import_folder(study, folder: str | Path, series: str | int | None = None) -> tuple[int, str]:
    """Add a DICOM folder's main series (or ``series``); returns its id and a line for
    the user naming the series imported and the ones left out."""
    image_id = study.add_image(Path(folder), None, series=series)
    return image_id, import_note(study.image(image_id))


# The import workers open their own Study on the root: the catalog takes several
# connections (WAL), so the table keeps reading while a worker copies and writes.
def import_files_at(
    root: str | Path, paths: list[str], modality: str | None = None
) -> tuple[list[int], str, list[str]]:
    """Worker: import ``paths`` into the study at ``root``; the new ids, a note and no
    partial errors (a failing file stops the import and raises)."""
    from napari_wsseg.study.store import Study

    with Study.open(root) as study:
        ids = import_into(study, paths, modality)
    return ids, f"imported {len(ids)} image(s) from {short_names(paths)}", []


def short_names(paths: list) -> str:
    """The first file names of ``paths``, for a status line."""
    names = ", ".join(Path(p).name for p in paths[:2])
    return names + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")


def list_series(folder: str | Path) -> list[dict[str, Any]]:
    """The series of a DICOM folder, main first, from headers only (no pixels)."""
    from napari_wsseg.io import list_dicom_series

    return list_dicom_series(folder)


SERIES_COLUMNS = ["series", "slices", "modality", "number", "folder", "problem"]


def series_cells(info: dict[str, Any]) -> list:
    """One row of the series dialog (:data:`SERIES_COLUMNS`) from a listing item."""
    number = info.get("number")
    label = info.get("label") or info.get("uid") or "?"
    return [
        f"{label}  (main)" if info.get("main") else label,
        int(info.get("n_slices") or 0),
        info.get("modality") or "",
        "" if number is None else int(number),
        info.get("folder") or ".",
        info.get("problem") or "",
    ]


def import_series_at(
    root: str | Path, folder: str | Path, series: list[int] | None = None
) -> tuple[list[int], str, list[str]]:
    """Worker: add a DICOM folder's main series, or each series index in ``series``,
    to the study at ``root``, each as its own image. Returns the new ids, a note
    for the user and the errors of the series that failed; raises when none came in."""
    from napari_wsseg.study.store import Study

    folder = Path(folder)
    with Study.open(root) as study:
        if not series:
            image_id, note = import_folder(study, folder)
            return [image_id], note, []
        ids, errors = [], []
        for index in series:
            try:
                ids.append(study.add_image(folder, None, series=index))
            except (OSError, ValueError) as err:
                errors.append(error_text(folder, err))
        if not ids:
            raise ValueError("; ".join(errors))
        return ids, series_note([study.image(i) for i in ids]), errors


def _series_name(info: dict[str, Any]) -> str:
    n = info.get("n_slices") or 0
    name = info.get("label") or info.get("description") or info.get("uid") or "?"
    return f"{name!r} ({n} slice{'s' if n != 1 else ''})"


def series_note(records: list) -> str:
    """What an import of several series of one folder brought in, and what it left out."""
    if len(records) == 1:
        return import_note(records[0])
    parts = [
        f"{Path(r.relpath).name} as {r.modality} (id {r.id}): "
        + _series_name(r.meta.get("series") or {})
        for r in records
    ]
    text = f"imported {len(records)} series: " + "; ".join(parts)
    taken = {(r.meta.get("series") or {}).get("index") for r in records}
    others = [o for o in records[0].meta.get("other_series") or [] if o.get("index") not in taken]
    if others:
        text += f"; {len(others)} other series left out: "
        text += ", ".join(_series_name(o) for o in others)
    return text


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


def case_name(case: dict[str, Any] | None) -> str:
    """The file name of a case's image (for messages), or "no case"."""
    if not case:
        return "no case"
    image = case.get("image")
    path = (getattr(image, "meta", None) or {}).get("path") if image is not None else None
    return Path(path).name if path else f"image {case.get('image_id')}"


def tell_error(text: str) -> None:
    """An error the napari way: a notification (and the activity log), not dock text."""
    from napari.utils.notifications import show_error

    show_error(text)


def tell_warning(text: str) -> None:
    """A warning as a napari notification."""
    from napari.utils.notifications import show_warning

    show_warning(text)


def vocabulary(modality: str) -> tuple[str, ...]:
    return labels_for(modality)


def format_labels(labels: dict[str, float], modality: str | None = None) -> str:
    """The positive labels; "negative" only when every label of the task is known to
    be 0; "unknown" when none is known (a missing label is unknown, not negative)."""
    known = {k: v for k, v in labels.items() if v is not None}
    on = [k for k, v in known.items() if float(v) > 0]
    missing = 0
    if modality is not None:
        missing = sum(1 for name in labels_for(modality) if name not in known)
    if not known:
        return "unknown"
    text = ", ".join(on) if on else "negative"
    return f"{text} ({missing} unknown)" if missing else text


LABEL_STATES = ("negative", "unknown", "positive")


def label_state(labels: dict[str, float], name: str) -> str:
    """One label's state for its check box: positive, negative or unknown."""
    value = labels.get(name)
    if value is None:
        return "unknown"
    return "positive" if float(value) > 0 else "negative"


def filter_records(records: list, modality: str, text: str) -> list:
    """Records of one modality ("all" for every one) whose name or labels contain ``text``."""
    text = text.strip().lower()
    out = []
    for rec in records:
        if modality != "all" and rec.modality != modality:
            continue
        hay = f"{Path(rec.relpath).name} {format_labels(rec.labels, rec.modality)}".lower()
        if text and text not in hay:
            continue
        out.append(rec)
    return out


def case_layers(viewer: napari.viewer.Viewer) -> list:
    return [ly for ly in viewer.layers if CASE_KEY in ly.metadata]


def foreign_path(layer) -> str | None:
    """The file of an image layer that is not part of a study case (opened with
    File > Open or dropped on the canvas), or None."""
    from napari.layers import Image

    if not isinstance(layer, Image) or CASE_KEY in layer.metadata:
        return None
    if MAP_KEY in layer.metadata:
        return None
    path = getattr(layer.source, "path", None)
    return str(path) if path else None


def current_case(viewer: napari.viewer.Viewer) -> dict[str, Any] | None:
    """Study root, image id, modality and ImageData of the case on screen (or None)."""
    for layer in case_layers(viewer):
        if layer.metadata.get("wsseg_role") == "image":
            return {**layer.metadata[CASE_KEY], "image": layer.metadata["wsseg_image"]}
    return None


def mask_slot(viewer: napari.viewer.Viewer):
    """The case's Labels layer, the empty placeholder of a case without a mask included."""
    for layer in case_layers(viewer):
        if layer.metadata.get("wsseg_role") == "mask":
            return layer
    return None


def mask_layer(viewer: napari.viewer.Viewer):
    """The case's mask (stored, predicted or painted); None for an untouched placeholder."""
    layer = mask_slot(viewer)
    return None if layer is None or _slots.is_placeholder(layer) else layer


def has_unsaved_edits(viewer: napari.viewer.Viewer) -> bool:
    layer = mask_layer(viewer)
    return bool(layer is not None and layer.metadata.get("wsseg_dirty"))


def load_case(study, image_id: int) -> dict[str, Any]:
    """Read image ``image_id`` and its latest accepted mask (file work only, no
    layers: runs in a worker so opening a case does not block the viewer)."""
    from napari_wsseg.io import read_image, read_mask

    rec = study.image(image_id)
    image = small_levels_read(read_image(rec.path, modality=rec.modality))
    latest = study.latest_accepted_mask(image_id)
    mask = None if latest is None else mask_to_layer(read_mask(latest.path), rec.modality)
    return {"root": str(study.root), "rec": rec, "image": image, "latest": latest, "mask": mask}


def small_levels_read(image):
    """``image`` with the pyramid levels at most :data:`SMALL_LEVEL` wide read into
    memory (a slide: the ones a fitted view shows). napari slices a lazy (dask) level
    on the UI thread when the case is shown: 40-80 ms for a 1024-pixel level; read
    here, in the case's worker, it costs that thread nothing. At most ~16 MB (RGB)."""
    if not image.multiscale:
        return image
    levels = [
        np.asarray(lv) if max(lv.shape[: image.ndim]) <= SMALL_LEVEL else lv for lv in image.data
    ]
    return dataclasses.replace(image, data=levels)


def load_case_at(root: str | Path, image_id: int) -> dict[str, Any]:
    """Worker: :func:`load_case` on its own connection to the study at ``root``."""
    from napari_wsseg.study.store import Study

    with Study.open(root) as study:
        return load_case(study, image_id)


def show_mask(
    viewer: napari.viewer.Viewer,
    data: np.ndarray,
    image,
    parent: int | None,
    source: str,
    prob_layer: str | None = None,
    slot=None,
    sliders: bool = True,
) -> Any:
    """Put ``data`` in the case's Labels layer (reused when it fits, else created),
    marked clean; ``source`` :data:`._slots.PLACEHOLDER` for an empty one; ``slot``: a
    spare Labels layer to use instead of the case's own; ``sliders=False``: a reused
    layer leaves the slider recompute to the caller."""
    case = current_case(viewer)
    layer = mask_slot(viewer) if slot is None else slot
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
    name = EMPTY_MASK_LAYER if source == _slots.PLACEHOLDER else MASK_LAYER
    if layer is not None and _slots.mask_fits(layer, data):
        # a new dict: the metadata event tells the docks (the browser's mask column)
        meta = {k: v for k, v in layer.metadata.items() if k in KEPT_KEYS} | meta
        if not layer.visible:  # a spare: shown first (a hidden layer's extent is kept)
            layer.visible = True
        _slots.update_labels(viewer, layer, data, scale, translate, sliders=sliders)
        layer.metadata = meta
        if layer.name != name:
            layer.name = name
    else:
        if layer is not None:
            _slots.drop(viewer, [layer])
        layer = viewer.add_labels(
            data, name=name, scale=scale, translate=translate, metadata=meta, opacity=0.5
        )
    layer.metadata["wsseg_dirty"] = False
    if not layer.metadata.get("wsseg_watched"):
        layer.events.paint.connect(lambda _e, ly=layer: mark_dirty(ly))
        layer.metadata["wsseg_watched"] = True
    return layer


def mark_dirty(layer) -> None:
    """Flag the mask as edited since it was shown or saved (painting calls this)."""
    layer.metadata["wsseg_dirty"] = True
