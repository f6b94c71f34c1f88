"""Correct's work without Qt: re-threshold, accept as a new version, list and restore."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from napari_wsseg.widgets import _case
from napari_wsseg.widgets._layerdata import layer_to_mask, mask_to_layer, threshold_mask

if TYPE_CHECKING:
    import napari


@lru_cache(maxsize=8)
def study_at(root: str):
    from napari_wsseg.study.store import Study

    return Study.open(root)


def rethreshold(viewer: napari.viewer.Viewer, threshold: float) -> bool:
    """Recompute the predicted mask at ``threshold``; False if there is nothing to redo
    (no prediction on screen, or the mask has edits that a new cut would lose)."""
    layer = _case.mask_layer(viewer)
    if layer is None or layer.metadata.get("wsseg_dirty"):
        return False
    name = layer.metadata.get("wsseg_prob_layer")
    if not name or name not in viewer.layers:
        return False
    prob = viewer.layers[name].data
    classes = layer.metadata.get("wsseg_classes") or []
    modality = layer.metadata[_case.CASE_KEY]["modality"]
    layer.data = threshold_mask(prob, threshold, classes, stack=modality == "xray")
    layer.metadata["wsseg_threshold"] = threshold
    return True


def set_contour(viewer: napari.viewer.Viewer, width: int) -> None:
    """Draw the case's mask as outlines ``width`` px wide (0: filled)."""
    layer = _case.mask_slot(viewer)  # an empty one too: what is painted on it is outlined
    if layer is not None and layer.contour != width:
        layer.contour = width


def accept(viewer: napari.viewer.Viewer, author: str) -> int:
    """Store the Labels layer as a new mask version; returns the version id.

    An edited prediction is stored twice: the model's mask (source ``predicted``)
    and, as its child, the user's (``corrected``), so the history says what the
    expert changed. A mask drawn from nothing is ``expert``; an edit of a stored
    version is ``corrected`` with that version as parent.
    """
    layer = _case.mask_layer(viewer)
    if layer is None:
        raise ValueError("no mask on screen: run Explain or paint a mask first")
    case = layer.metadata[_case.CASE_KEY]
    study = study_at(case["study"])
    image = layer.metadata["wsseg_image"]
    data = layer_to_mask(layer.data, case["modality"])
    parent = layer.metadata.get("wsseg_parent")
    source = layer.metadata.get("wsseg_source", "expert")
    if source == "predicted":
        prob_name = layer.metadata.get("wsseg_prob_layer")
        model = layer.metadata.get("wsseg_model")
        if prob_name in viewer.layers:
            pred = threshold_mask(
                viewer.layers[prob_name].data,
                layer.metadata["wsseg_threshold"],
                layer.metadata.get("wsseg_classes") or [],
                stack=case["modality"] == "xray",
            )
            parent = study.save_mask(
                case["image_id"],
                layer_to_mask(pred, case["modality"]),
                "predicted",
                author=author,
                model_version=model,
                like=image,
            )
        new_source = "corrected"
    else:
        new_source = "corrected" if parent is not None else "expert"
    vid = study.save_mask(
        case["image_id"], data, new_source, author=author, parent=parent, like=image
    )
    # a new dict (not an in-place update) so the layer's metadata event tells the
    # other docks (the browser's mask column) that the study changed
    layer.metadata = {
        **layer.metadata,
        "wsseg_parent": vid,
        "wsseg_source": new_source,
        "wsseg_dirty": False,
    }
    return vid


def versions(viewer: napari.viewer.Viewer) -> list[Any]:
    case = _case.current_case(viewer)
    if case is None:
        return []
    return study_at(case["study"]).mask_versions(case["image_id"])


def view_version(viewer: napari.viewer.Viewer, version) -> None:
    """Show a stored version in the Labels layer (nothing is written)."""
    from napari_wsseg.io import read_mask

    case = _case.current_case(viewer)
    data = mask_to_layer(read_mask(version.path), case["modality"])
    _case.show_mask(viewer, data, case["image"], parent=version.id, source=version.source)


def restore_version(viewer: napari.viewer.Viewer, version, author: str) -> int:
    """Make an earlier version current again: a new version with the same pixels."""
    case = _case.current_case(viewer)
    study = study_at(case["study"])
    data = study.load_mask(version.id)
    vid = study.save_mask(
        case["image_id"], data, "corrected", author=author, parent=version.id, like=case["image"]
    )
    view_version(viewer, study.mask_versions(case["image_id"])[-1])
    return vid


def describe_version(v) -> str:
    parent = f" ← {v.parent}" if v.parent else ""
    who = f" by {v.author}" if v.author else ""
    return f"#{v.id} v{v.version} {v.source}{who} {v.created[:19]}{parent}"
