"""Seeded phantom generators with known ground truth, one module per modality.

Each ``phantoms/<modality>.py`` offers ``make_case(rng, label, **size_kwargs) ->
PhantomCase``; ``phantoms.demo.make_study`` writes a whole study.
"""

from napari_wsseg.phantoms.common import PhantomCase

MODULES = {
    "ct": "napari_wsseg.phantoms.ct",
    "mammo": "napari_wsseg.phantoms.mammo",
    "slide": "napari_wsseg.phantoms.slide",
    "xray": "napari_wsseg.phantoms.xray",
    "skin": "napari_wsseg.phantoms.skin",
}

__all__ = ["MODULES", "PhantomCase"]
