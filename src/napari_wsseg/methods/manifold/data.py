"""Data side of the manifold-attention method: image loading, datasets, samplers.

Images are resized once to ``image_size`` and kept as uint8 (3, S, S) tensors; the
model normalises them. Metric stages draw class-balanced batches (8 images per class,
Adiga et al. Sec. 3.2); the DCML stage draws each batch from one cluster of the
current embedding and tags it with that cluster's learner (Sanakoyeu et al. 2019).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from napari_wsseg.methods.manifold.losses import cluster_embeddings

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


# --- images -----------------------------------------------------------------------------


def image_to_rgb(image: ImageData, source: str = "image") -> np.ndarray:
    """(Y, X, 3) float32 in [0, 1] from a 2D ImageData (grey images are replicated)."""
    arr = image.data[0] if image.multiscale else image.data
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    else:
        raise ValueError(f"{source}: expected a 2D grey or RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if image.contrast_limits is not None:
        lo, hi = image.contrast_limits
    else:
        lo, hi = float(arr.min()), float(arr.max())
    return np.clip((arr - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def resize_rgb(rgb: np.ndarray, size: int) -> torch.Tensor:
    """(Y, X, 3) float in [0, 1] -> (3, S, S) uint8 tensor (antialiased bilinear)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (t[0].clamp(0, 1) * 255).round().to(torch.uint8)


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """Binary (Y, X) mask -> (S, S) uint8 tensor (nearest neighbour)."""
    t = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].to(torch.uint8)


def load_item_image(item: SnapshotItem) -> ImageData:
    """Read a study item's image through the io floor."""
    from napari_wsseg.io import read_image

    return read_image(item.path, modality=item.modality)


def load_item_mask(path: str) -> np.ndarray:
    """Read a label mask (any label > 0 is lesion) through the io floor."""
    from napari_wsseg.io import read_mask

    mask = np.asarray(read_mask(path))
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected a 2D label mask, got shape {mask.shape}")
    return mask


def class_index(item: SnapshotItem, classes: Sequence[str]) -> int:
    """The item's single positive class, or -1 when none or several are positive."""
    pos = [i for i, c in enumerate(classes) if item.labels.get(c, 0) >= 0.5]
    return pos[0] if len(pos) == 1 else -1


# --- datasets ---------------------------------------------------------------------------


class ImageClassDataset(Dataset):
    """Resized images with their class index.

    Index ``j`` in ``[0, N)`` is image ``j``; the DCML sampler tags an image with its
    learner k as ``j = i + N (k + 1)`` (plain ints, so any engine can shuffle, shard and
    batch them). ``model`` is the unwrapped model at the stage's start (the same object
    that trains): the DCML sampler embeds the data with it when it re-clusters, and
    ``dcml_state`` keeps the cluster assignment across epochs.
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray, model: Any = None) -> None:
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.model = model
        self.dcml_state: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, j: int) -> dict[str, Any]:
        i, learner = j % len(self.images), j // len(self.images) - 1
        return {"image": self.images[i], "label": int(self.labels[i]), "learner": int(learner)}


class MaskDataset(Dataset):
    """Resized images with a (proxy or expert) binary mask for the U-Net stage."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "mask": self.masks[i].long()}


# --- samplers ---------------------------------------------------------------------------


def balanced_batch(
    labels: np.ndarray, pool: np.ndarray, total: int, generator: torch.Generator
) -> list[int]:
    """``total`` indices from ``pool`` split evenly over the classes present in it
    (without replacement when a class has enough members, with replacement otherwise).
    With all C classes present and ``total = 8 C`` this is 8 images per class."""
    classes = np.unique(labels[pool])
    counts = [total // len(classes) + (j < total % len(classes)) for j in range(len(classes))]
    out: list[int] = []
    for c, n in zip(classes, counts):
        members = pool[labels[pool] == c]
        if len(members) >= n:
            pick = torch.randperm(len(members), generator=generator)[:n]
        else:
            pick = torch.randint(len(members), (n,), generator=generator)
        out.extend(int(members[j]) for j in pick)
    return out


class ClassBalancedSampler(Sampler):
    """Flat indices in consecutive batches of ``per_class`` images of every class.

    Used as a DataLoader ``sampler`` with ``batch_size = per_class * n_classes``.
    """

    def __init__(
        self, labels: np.ndarray, per_class: int, generator: torch.Generator | None = None
    ) -> None:
        self.labels = np.asarray(labels)
        self.per_class = per_class
        self.generator = generator if generator is not None else torch.Generator()
        self.pool = np.arange(len(self.labels))
        n_cls = len(np.unique(self.labels))
        self.batch_size = per_class * n_cls
        self.n_batches = max(1, int(np.ceil(len(self.labels) / self.batch_size)))

    def __len__(self) -> int:
        return self.n_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.n_batches):
            yield from balanced_batch(self.labels, self.pool, self.batch_size, self.generator)


class DCMLSampler(Sampler):
    """One epoch of DCML batches (Sanakoyeu et al. 2019).

    The data are clustered into K groups by k-means on the current embedding, again
    every ``recluster_every`` epochs (the assignment lives in ``state``, shared by the
    samplers of successive epochs; an engine builds one sampler per epoch, at its start).
    Batch b comes from cluster b mod K, class-balanced inside it, and its indices are
    tagged with that learner (``i + N (k + 1)``, see :class:`ImageClassDataset`).
    Every batch has ``per_class * C`` indices (so consecutive chunks of that size stay
    aligned): a cluster with fewer classes gives more images of each. A cluster holding
    fewer than two classes cannot give a margin loss: its batch falls back to the whole
    data set (still tagged with its learner).
    """

    def __init__(
        self,
        labels: np.ndarray,
        embed: Callable[[], np.ndarray],
        k: int,
        per_class: int,
        recluster_every: int,
        generator: torch.Generator | None = None,
        seed: int = 0,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.labels = np.asarray(labels)
        self.embed, self.k, self.per_class = embed, k, per_class
        self.recluster_every = max(1, recluster_every)
        self.generator = generator if generator is not None else torch.Generator()
        self.seed = seed
        self.state = state if state is not None else {}
        self.batch_size = per_class * len(np.unique(self.labels))
        self.n_batches = max(k, int(np.ceil(len(self.labels) / self.batch_size)))

    def __len__(self) -> int:
        return self.n_batches * self.batch_size

    @property
    def assign(self) -> np.ndarray | None:
        """The current cluster (= learner) of every image."""
        return self.state.get("assign")

    def recluster(self) -> np.ndarray:
        """K-means on the current embedding; learners keep their closest old cluster."""
        epochs = self.state.get("epochs", 0)
        self.state["assign"] = cluster_embeddings(
            self.embed(), self.k, seed=self.seed + epochs, previous=self.assign
        )
        return self.state["assign"]

    def __iter__(self) -> Iterator[int]:
        epochs = self.state.get("epochs", 0)
        if self.assign is None or epochs % self.recluster_every == 0:
            self.recluster()
        self.state["epochs"] = epochs + 1
        assign, n = self.assign, len(self.labels)
        for b in range(self.n_batches):
            learner = b % self.k
            pool = np.flatnonzero(assign == learner)
            if len(np.unique(self.labels[pool])) < 2:
                pool = np.arange(n)
            for i in balanced_batch(self.labels, pool, self.batch_size, self.generator):
                yield i + n * (learner + 1)
