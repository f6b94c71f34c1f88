"""Write a whole demo study from the phantoms: image files, labels and masks.

Every image gets its ground truth as a ``reference`` mask version (for evaluation
only); the first ``n_expert[modality]`` cases that have a non-empty mask also get it
as an ``expert`` version, the few expert masks of the partial-supervision setting.
Cases are seeded per (seed, modality, index), so adding cases never changes the
earlier ones.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from napari_wsseg.phantoms import MODULES
from napari_wsseg.phantoms.common import PhantomCase
from napari_wsseg.study.store import Study

DEMO_COUNTS: dict[str, int] = {"ct": 4, "mammo": 3, "slide": 3, "xray": 6, "skin": 6}
DEMO_EXPERT: dict[str, int] = {"ct": 1, "mammo": 1, "slide": 1, "xray": 2, "skin": 2}
DEMO_SIZES: dict[str, dict[str, Any]] = {
    "mammo": {"shape": (1472, 960)},
    "slide": {"shape": (1024, 1024)},
}
_ORDER = ("ct", "mammo", "slide", "xray", "skin")
_MAMMO_CYCLE = ("malignant", "normal", "benign", "normal")


def case_label(modality: str, index: int) -> Any:
    """The label a demo case gets, cycling so positives and negatives balance."""
    if modality in ("ct", "slide"):
        return int(index % 2 == 0)
    if modality == "mammo":
        return _MAMMO_CYCLE[index % len(_MAMMO_CYCLE)]
    if modality == "skin":
        return ("melanoma", "nevus", "keratosis")[index % 3]
    if modality == "xray":
        if index % 4 == 0:
            return "normal"
        from napari_wsseg.study.vocab import CHEST_FINDINGS

        rng = np.random.default_rng([index, 97])
        on = [f for f in CHEST_FINDINGS if rng.random() < 0.3]
        return on or [CHEST_FINDINGS[index % len(CHEST_FINDINGS)]]
    raise ValueError(f"unknown modality {modality!r}; expected one of {_ORDER}")


def make_phantom(modality: str, index: int, seed: int = 0, **size_kwargs: Any) -> PhantomCase:
    """Case ``index`` of a modality, as ``make_study`` generates it."""
    if modality not in MODULES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {_ORDER}")
    module = importlib.import_module(MODULES[modality])
    rng = np.random.default_rng([seed, _ORDER.index(modality), index])
    return module.make_case(rng, case_label(modality, index), **size_kwargs)


def write_case_image(case: PhantomCase, modality: str, path_stem: Path) -> Path:
    """Write a phantom image in its modality's usual format; returns the file path."""
    import imageio.v3 as iio

    from napari_wsseg.io.atomic import atomic_write

    if modality == "ct":
        import nibabel as nib

        sz, sy, sx = case.meta["spacing"]
        # (X, Y, Z) voxel order with an LPS->RAS affine: readers give back (Z, Y, X)
        affine = np.diag([-sx, -sy, sz, 1.0])
        img = nib.Nifti1Image(np.ascontiguousarray(case.image.transpose(2, 1, 0)), affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        path = path_stem.with_suffix(".nii.gz")
        return atomic_write(path, lambda p: nib.save(img, str(p)))
    if modality == "slide":
        from napari_wsseg.phantoms.slide import write_pyramid

        levels = max(1, min(4, int(np.log2(min(case.image.shape[:2]) / 128)) + 1))
        return write_pyramid(
            path_stem.with_suffix(".tif"), case.image, levels=levels, mpp=case.meta["mpp"]
        )
    path = path_stem.with_suffix(".png")
    return atomic_write(path, lambda p: iio.imwrite(p, case.image, extension=".png"))


def _size_kwargs(sizes: dict | None, modality: str) -> dict[str, Any]:
    value = (sizes or {}).get(modality, {})
    if isinstance(value, dict):
        return dict(value)
    return {"shape": tuple(value)}


def make_study(
    out_dir: str | Path,
    counts: dict[str, int],
    n_expert: dict[str, int] | None = None,
    seed: int = 0,
    sizes: dict | None = None,
) -> Study:
    """Create a study in ``out_dir`` with ``counts[modality]`` phantom cases each.

    ``sizes`` maps a modality to ``make_case`` keyword arguments (or a shape tuple).
    Returns the open :class:`Study`.
    """
    for m in counts:
        if m not in MODULES:
            raise ValueError(f"unknown modality {m!r} in counts; expected some of {_ORDER}")
    n_expert = n_expert or {}
    study = Study.create(out_dir)
    try:
        for modality in _ORDER:
            n = int(counts.get(modality, 0))
            folder = study.root / "images" / modality
            folder.mkdir(parents=True, exist_ok=True)
            cases = [
                make_phantom(modality, i, seed, **_size_kwargs(sizes, modality)) for i in range(n)
            ]
            want = int(n_expert.get(modality, 0))
            positives = [i for i, c in enumerate(cases) if c.mask.any()]
            others = [i for i in range(n) if i not in positives]
            expert = set((positives + others)[:want])
            for i, case in enumerate(cases):
                path = write_case_image(case, modality, folder / f"{modality}_{i:03d}")
                meta = {k: v for k, v in case.meta.items() if k != "lesions"}
                meta["phantom"] = {"seed": seed, "index": i}
                image_id = study.add_image(
                    path, modality, labels=case.labels, copy=False, meta=meta
                )
                study.save_mask(image_id, case.mask, "reference", author="phantom")
                if i in expert:
                    study.save_mask(image_id, case.mask, "expert", author="phantom-expert")
    except BaseException:
        study.close()
        raise
    return study
