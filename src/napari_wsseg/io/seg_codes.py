"""Coded segment descriptions of each task's mask classes, for DICOM SEG.

Each mask class gets a SNOMED CT category and type (and an anatomic region where
the task has one). Where SNOMED has no concept that fits the class (CheXpert's
"airspace opacity", "enlarged cardiomediastinum", "support devices") the code is
in the private scheme ``99WSSEG`` with the class name as its value, as PS3.16
allows for local codes; a reader keys segments on their label, which is the
class name.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99WSSEG"

_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure
_FINDING = codes.SCT.Finding

# class name -> (category, type, anatomic region or None)
_CODES: dict[str, tuple[Code, Code, Code | None]] = {
    "pdac": (_ABNORMAL, codes.SCT.Neoplasm, codes.SCT.Pancreas),
    "malignant": (_ABNORMAL, Code("363346000", "SCT", "Malignant neoplasm"), codes.SCT.Breast),
    "benign": (_ABNORMAL, Code("3898006", "SCT", "Benign neoplasm"), codes.SCT.Breast),
    "tumor": (_ABNORMAL, codes.SCT.Neoplasm, None),
    "lesion": (_ABNORMAL, codes.SCT.SkinLesion, codes.SCT.Skin),
    "atelectasis": (_FINDING, Code("46621007", "SCT", "Atelectasis"), codes.SCT.Lung),
    "cardiomegaly": (_FINDING, codes.SCT.Cardiomegaly, codes.SCT.Heart),
    "consolidation": (_FINDING, Code("95436008", "SCT", "Lung consolidation"), codes.SCT.Lung),
    "edema": (_FINDING, codes.SCT.PulmonaryEdema, codes.SCT.Lung),
    "lung_lesion": (_ABNORMAL, codes.SCT.Lesion, codes.SCT.Lung),
    "pleural_effusion": (_FINDING, codes.SCT.PleuralEffusion, codes.SCT.Chest),
    "pneumothorax": (_FINDING, codes.SCT.Pneumothorax, codes.SCT.Chest),
    "support_devices": (
        codes.SCT.PhysicalObject,
        Code("support_devices", PRIVATE_SCHEME, "Support devices"),
        codes.SCT.Chest,
    ),
}


@dataclass(frozen=True)
class SegmentCode:
    """One mask class as a DICOM segment: number, label and its codes."""

    number: int
    label: str
    category: Code
    type: Code
    region: Code | None


def _private(name: str) -> tuple[Code, Code, Code | None]:
    meaning = name.replace("_", " ").capitalize()
    return _FINDING, Code(name, PRIVATE_SCHEME, meaning), codes.SCT.Chest


def segment_codes(classes: dict[int, str]) -> list[SegmentCode]:
    """The segments of a task's mask classes (label value -> name, as
    ``study.vocab.MASK_CLASSES``), numbered as the label values (X-ray: channel
    ``c`` is segment ``c + 1``)."""
    out = []
    for value, name in sorted(classes.items()):
        category, kind, region = _CODES.get(name) or _private(name)
        out.append(SegmentCode(value, name, category, kind, region))
    return out
