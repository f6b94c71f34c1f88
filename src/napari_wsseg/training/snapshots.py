"""The study snapshot a job trains on, frozen into its run folder at launch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_wsseg.study.snapshot import Snapshot, SnapshotItem

SNAPSHOT = "snapshot.json"
HELD_OUT = "held_out"  # split of the cases no job trains on (scored after training)


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
    """Freeze the study's images, weak labels and accepted masks now; the study's
    held-out cases (:mod:`napari_wsseg.study.heldout`) get ``split='held_out'``."""
    from napari_wsseg.study.heldout import held_out_ids
    from napari_wsseg.study.store import Study

    with Study.open(study) as st:
        snap = st.snapshot(modality=modality, val_fraction=val_fraction, seed=seed)
        mods = sorted({it.modality for it in snap.items})
        held = {i for m in mods for i in held_out_ids(st, m)}
    for it in snap.items:
        if it.image_id in held:
            it.split = HELD_OUT
    return snap


def split_items(items: list[SnapshotItem], val_fraction: float, seed: int) -> None:
    """Mark a seeded ``val_fraction`` of the items ``split='val'`` (at least one, never all)
    when the snapshot came without a validation split."""
    pool = [it for it in items if it.split != HELD_OUT]
    if val_fraction <= 0 or len(pool) < 2 or any(it.split == "val" for it in pool):
        return
    n_val = min(len(pool) - 1, max(1, int(round(len(pool) * val_fraction))))
    order = np.random.default_rng(seed).permutation(len(pool))
    for i in order[:n_val]:
        pool[int(i)].split = "val"


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
    train = [it for it in items if it.split not in ("val", HELD_OUT)]
    return {
        "n_train_images": len(train),
        "n_val_images": sum(1 for it in items if it.split == "val"),
        "n_held_out_images": sum(1 for it in items if it.split == HELD_OUT),
        "n_expert_masks": sum(1 for it in train if it.mask),
    }


def dump(snapshot: Snapshot) -> str:
    return json.dumps(snapshot.to_json(), indent=1)
