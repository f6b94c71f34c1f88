"""The study datastore: images, weak labels, versioned masks and snapshots."""

from napari_wsseg.study.records import ImageRecord, MaskVersion
from napari_wsseg.study.snapshot import Snapshot, SnapshotItem
from napari_wsseg.study.store import Study

__all__ = ["ImageRecord", "MaskVersion", "Snapshot", "SnapshotItem", "Study"]
