"""Image-level label vocabularies, one per task (modality)."""

from __future__ import annotations

CHEST_FINDINGS = (
    "airspace_opacity",
    "atelectasis",
    "cardiomegaly",
    "consolidation",
    "edema",
    "enlarged_cardiomediastinum",
    "lung_lesion",
    "pleural_effusion",
    "pneumothorax",
    "support_devices",
)

# Each task names its labels; a label is 0/1 (or missing) per image. Multi-label for X-rays.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "ct": ("pdac",),
    "mammo": ("malignant", "benign"),
    "slide": ("tumor",),
    "xray": CHEST_FINDINGS,
    "skin": ("melanoma", "nevus", "keratosis"),
}

# Mask classes: integer label value -> name (0 is background). X-ray masks are a
# (C, Y, X) stack with one binary channel per chest finding instead.
MASK_CLASSES: dict[str, dict[int, str]] = {
    "ct": {1: "pdac"},
    "mammo": {1: "malignant", 2: "benign"},
    "slide": {1: "tumor"},
    "xray": {i + 1: name for i, name in enumerate(CHEST_FINDINGS)},
    "skin": {1: "lesion"},
}


def labels_for(modality: str) -> tuple[str, ...]:
    """The label names of a modality's task; raises for an unknown modality."""
    try:
        return VOCABULARY[modality]
    except KeyError:
        raise ValueError(
            f"unknown modality {modality!r}; expected one of {sorted(VOCABULARY)}"
        ) from None
