"""A frozen view of a study for training: images, weak labels, accepted masks.

A running job reads only its snapshot (saved as JSON in the run folder), so later
edits in the viewer never change what it trains on. Mask files are versioned and
never overwritten, so the paths stay valid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SnapshotItem:
    """One image of a study snapshot.

    ``labels`` maps the task's label names to 0/1 (missing = unknown). ``mask`` is
    the latest accepted expert/corrected mask version (None for weak-only images);
    ``reference_mask`` is a ground-truth mask kept only for evaluation (phantoms).
    Paths are absolute.
    """

    image_id: int
    path: str
    modality: str
    labels: dict[str, float] = field(default_factory=dict)
    mask: str | None = None
    mask_version: int | None = None
    reference_mask: str | None = None
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_mask(self) -> bool:
        return self.mask is not None


@dataclass
class Snapshot:
    """The list of items a job trains and validates on."""

    study: str
    items: list[SnapshotItem]
    created: str = ""

    def by_modality(self, modality: str) -> list[SnapshotItem]:
        return [it for it in self.items if it.modality == modality]

    def to_json(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "created": self.created,
            "items": [asdict(i) for i in self.items],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Snapshot:
        return cls(
            study=obj["study"],
            created=obj.get("created", ""),
            items=[SnapshotItem(**i) for i in obj["items"]],
        )

    def save(self, path: str | Path) -> None:
        from napari_wsseg.io.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        return cls.from_json(json.loads(Path(path).read_text()))
