"""napari sample data: one phantom per modality, with its ground truth as labels.

Generated in memory with a fixed seed (the slide is written once as a pyramidal
TIFF to a cache folder and opened lazily, as a real slide would be).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.study.vocab import CHEST_FINDINGS

SEED = 7
LayerData = tuple[Any, dict[str, Any], str]


def _rng(modality_index: int) -> np.random.Generator:
    return np.random.default_rng([SEED, modality_index])


def _pair(case: Any, name: str, image_kw: dict[str, Any], mask: np.ndarray) -> list[LayerData]:
    scale = tuple(case.meta["spacing"])
    meta = {k: v for k, v in case.meta.items() if k != "lesions"}
    img_kw = {
        "name": name,
        "scale": scale,
        "metadata": {"labels": case.labels, **meta},
        **image_kw,
    }
    lab_kw = {"name": f"{name} ground truth", "scale": scale, "opacity": 0.5}
    return [(case.image, img_kw, "image"), (mask, lab_kw, "labels")]


def sample_ct() -> list[LayerData]:
    """CT phantom (pancreas with a lesion), HU with an abdominal window."""
    from napari_wsseg.phantoms import ct

    case = ct.make_case(_rng(0), 1)
    return _pair(
        case, "CT phantom", {"contrast_limits": [-160, 240], "colormap": "gray"}, case.mask
    )


def sample_mammo() -> list[LayerData]:
    """Full-size (2944x1920) mammogram phantom with a malignant and a benign mass."""
    from napari_wsseg.phantoms import mammo

    case = mammo.make_case(_rng(1), "both")
    return _pair(
        case, "Mammogram phantom", {"contrast_limits": [0, 4095], "colormap": "gray"}, case.mask
    )


def _slide_cache() -> Path:
    folder = Path(tempfile.gettempdir()) / "napari-wsseg-samples"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sample_slide() -> list[LayerData]:
    """Slide phantom (2048x2048 at 0.5 um/px) as a lazy pyramid, tumour as labels."""
    from napari_wsseg.phantoms import slide

    case = slide.make_case(_rng(2), 1)
    path = _slide_cache() / f"slide_phantom_seed{SEED}.tif"
    if not path.exists():
        slide.write_pyramid(path, case.image, levels=4, mpp=case.meta["mpp"])
    scale = tuple(case.meta["spacing"])
    meta = {"labels": case.labels, "mpp": case.meta["mpp"], "path": str(path)}
    try:
        from napari_wsseg.io import read_image

        img = read_image(path, "slide")
        kw = img.layer_kwargs()
        kw.update(name="Slide phantom")
        kw["metadata"] = {**kw.get("metadata", {}), **meta}
        data = img.data
    except ImportError:  # io floor not installed: in-memory pyramid instead
        levels = [case.image]
        for _ in range(3):
            levels.append(slide.downsample2(levels[-1]))
        data = levels
        kw = {
            "name": "Slide phantom",
            "rgb": True,
            "multiscale": True,
            "scale": scale,
            "metadata": meta,
        }
    labels_kw = {"name": "Slide phantom ground truth", "scale": scale, "opacity": 0.4}
    return [(data, kw, "image"), (case.mask, labels_kw, "labels")]


def sample_xray() -> list[LayerData]:
    """Chest X-ray phantom; findings shown as one labels layer (value = finding + 1)."""
    from napari_wsseg.phantoms import xray

    case = xray.make_case(
        _rng(3), ["cardiomegaly", "pleural_effusion", "support_devices", "lung_lesion"]
    )
    flat = np.zeros(case.mask.shape[1:], dtype=np.uint8)
    for i in range(len(CHEST_FINDINGS)):
        flat[case.mask[i] > 0] = i + 1
    layers = _pair(
        case, "Chest X-ray phantom", {"contrast_limits": [0, 4095], "colormap": "gray"}, flat
    )
    layers[1][1]["metadata"] = {"classes": {i + 1: f for i, f in enumerate(CHEST_FINDINGS)}}
    return layers


def sample_skin() -> list[LayerData]:
    """Skin-lesion phantom (melanoma), RGB."""
    from napari_wsseg.phantoms import skin

    case = skin.make_case(_rng(4), "melanoma")
    return _pair(case, "Skin lesion phantom", {"rgb": True}, case.mask)
