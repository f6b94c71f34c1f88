"""The study snapshot a job trains on, frozen into its run folder at launch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_wsseg.study.snapshot import Snapshot, SnapshotItem

SNAPSHOT = "snapshot.json"


def load_snapshot_file(path: str | Path) -> Snapshot:
    """Read a snapshot JSON; errors name the file."""
    path = Path(path)
    try:
        return Snapshot.load(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: snapshot file not found") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a valid snapshot ({err})") from None


def take_snapshot(study: str, modality: str | None, val_fraction: float, seed: int) -> Snapshot:
    """Freeze the study's images, weak labels and accepted masks now."""
    from napari_wsseg.study.store import Study

    with Study.open(study) as st:
        return st.snapshot(modality=modality, val_fraction=val_fraction, seed=seed)


def split_items(items: list[SnapshotItem], val_fraction: float, seed: int) -> None:
    """Mark a seeded ``val_fraction`` of the items ``split='val'`` (at least one, never all)
    when the snapshot came without a validation split."""
    if val_fraction <= 0 or len(items) < 2 or any(it.split == "val" for it in items):
        return
    n_val = min(len(items) - 1, max(1, int(round(len(items) * val_fraction))))
    order = np.random.default_rng(seed).permutation(len(items))
    for i in order[:n_val]:
        items[int(i)].split = "val"


def method_items(snapshot: Snapshot, modality: str | None, source: str) -> list[SnapshotItem]:
    """The snapshot's items of the method's modality (all items when none match a name)."""
    items = snapshot.items
    if modality and any(it.modality == modality for it in items):
        items = [it for it in items if it.modality == modality]
    if not items:
        raise ValueError(f"{source}: the snapshot has no images to train on")
    return items


def snapshot_summary(items: list[SnapshotItem]) -> dict[str, int]:
    """Counts for the registry's info.json."""
    train = [it for it in items if it.split != "val"]
    return {
        "n_train_images": len(train),
        "n_val_images": len(items) - len(train),
        "n_expert_masks": sum(1 for it in train if it.mask),
    }


def dump(snapshot: Snapshot) -> str:
    return json.dumps(snapshot.to_json(), indent=1)
