"""CheXseg data side: X-ray inputs, masks, the p-mixing sampler, pseudo-labels.

Pseudo-labels follow CheXseg App. A.1: per-class Grad-CAM maps of the frozen
classifier, cut at a per-class threshold chosen to maximise IoU on the images that
have expert masks. Only findings that the image-level label marks positive get a
pseudo-mask (a map of an absent finding is not a finding); an unknown label counts
as negative.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from napari_wsseg.study.vocab import CHEST_FINDINGS

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem

N_CLASSES = len(CHEST_FINDINGS)


def xray_input(image: ImageData, size: int, source: str = "image") -> torch.Tensor:
    """(1, S, S) float32 in [0, 1]: window by the contrast limits, antialiased resize."""
    arr = image.data[0] if image.multiscale else image.data
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(-1)
    if arr.ndim != 2:
        raise ValueError(f"{source}: expected a 2D X-ray, got shape {arr.shape}")
    lo, hi = image.contrast_limits or (float(arr.min()), float(arr.max()))
    arr = np.clip((arr - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    t = torch.from_numpy(arr)[None, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0]


def resize_masks(mask: np.ndarray, size: int) -> torch.Tensor:
    """(C, Y, X) binary -> (C, S, S) bool (nearest neighbour)."""
    t = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None]
    return F.interpolate(t, size=(size, size), mode="nearest")[0] > 0.5


def load_xray_mask(path: str, size: int) -> torch.Tensor:
    """Read a (10, Y, X) X-ray mask stack (one channel per finding) as (10, S, S) bool."""
    from napari_wsseg.io import read_mask

    mask = np.asarray(read_mask(path))
    if mask.ndim != 3 or mask.shape[0] != N_CLASSES:
        raise ValueError(
            f"{path}: X-ray masks are ({N_CLASSES}, Y, X) stacks in CHEST_FINDINGS order; "
            f"got shape {mask.shape}"
        )
    return resize_masks(mask, size)


def label_vector(item: SnapshotItem) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, known), both (10,) float: 0/1 per finding and whether it is known."""
    lab = torch.zeros(N_CLASSES)
    known = torch.zeros(N_CLASSES)
    for i, name in enumerate(CHEST_FINDINGS):
        v = item.labels.get(name)
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            lab[i], known[i] = float(v > 0.5), 1.0
    return lab, known


class ListDataset(Dataset):
    """Samples as a list of dicts; bool masks are kept bit-packed (8x less memory)."""

    def __init__(self, samples: list[dict]) -> None:
        self.samples = []
        for s in samples:
            s = dict(s)
            if "mask" in s:
                m = s.pop("mask")
                s["_shape"] = tuple(m.shape)
                s["_bits"] = np.packbits(m.numpy().astype(bool), axis=None)
            self.samples.append(s)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = dict(self.samples[i])
        if "_bits" in s:
            shape, bits = s.pop("_shape"), s.pop("_bits")
            flat = np.unpackbits(bits, count=int(np.prod(shape)))
            s["mask"] = torch.from_numpy(flat.reshape(shape).astype(bool))
        return s


class PMixSampler(Sampler[int]):
    """Each draw is an expert-mask example with probability ``p``, else a pseudo-label one.

    CheXseg Sec. 4.1: "p determines the expected fraction of images with expert
    annotations in a single batch". Indices ``[0, n_expert)`` are expert examples,
    ``[n_expert, n_expert + n_weak)`` pseudo-labelled ones; within a kind the draw is
    uniform with replacement. A kind with no examples cannot be drawn: p = 1 needs
    expert masks, p = 0 pseudo-labels; for 0 < p < 1 the other kind takes its place.
    """

    def __init__(
        self,
        n_expert: int,
        n_weak: int,
        p: float,
        num_samples: int,
        generator: torch.Generator | None = None,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p = {p} is not a probability")
        if (p == 1.0 and n_expert == 0) or (p == 0.0 and n_weak == 0) or n_expert + n_weak == 0:
            raise ValueError(
                f"p = {p} needs examples of that kind (expert {n_expert}, weak {n_weak})"
            )
        self.n_expert, self.n_weak, self.num_samples = n_expert, n_weak, num_samples
        self.p = 1.0 if n_weak == 0 else 0.0 if n_expert == 0 else float(p)
        self.generator = generator

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        g, n = self.generator, self.num_samples
        expert = torch.rand(n, generator=g) < self.p
        e = torch.randint(max(self.n_expert, 1), (n,), generator=g)
        w = torch.randint(max(self.n_weak, 1), (n,), generator=g) + self.n_expert
        return iter(torch.where(expert, e, w).tolist())


def class_ious(pred: torch.Tensor, gt: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean IoU over images per class. pred/gt (N, C, ...) bool, present (N, C) bool:
    the images counted for each class. A class with no counted image gets NaN."""
    dims = tuple(range(2, pred.ndim))
    inter = (pred & gt).sum(dims).double()
    union = (pred | gt).sum(dims).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), 1.0)
    n = present.sum(0).double()
    return torch.where(n > 0, (iou * present).sum(0) / n.clamp_min(1), float("nan"))


def select_thresholds(
    cams: torch.Tensor,
    gt: torch.Tensor,
    labels: torch.Tensor,
    grid: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)),
    default: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Grad-CAM threshold maximising IoU on expert images (App. A.1).

    ``cams`` (N, C, ...) in [0, 1], ``gt`` (N, C, ...) bool expert masks, ``labels``
    (N, C) 0/1. The pseudo-mask is ``(cam >= t) & label``; a class's IoU is the mean
    over the images where it is labelled or drawn (others would add a trivial 1). The
    smallest best threshold wins ties; a class never present keeps ``default``.
    Returns (thresholds (C,), best IoU (C,) with NaN for absent classes).
    """
    lab = labels.bool()
    present = lab | gt.flatten(2).any(-1)
    gate = lab.view(*lab.shape, *([1] * (cams.ndim - 2)))
    best_t = torch.full((cams.shape[1],), float(default))
    best = torch.full((cams.shape[1],), -1.0, dtype=torch.float64)
    for t in grid:
        ious = class_ious((cams >= t) & gate, gt, present)
        better = ious > best  # NaN compares False: absent classes keep the default
        best_t[better] = float(t)
        best = torch.where(better, ious, best)
    return best_t, torch.where(best < 0, float("nan"), best)


def pseudo_masks(
    cams: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor
) -> torch.Tensor:
    """(N, C, ...) bool: ``cam_c >= t_c`` for the findings labelled positive."""
    shape = (1, -1) + (1,) * (cams.ndim - 2)
    gate = labels.bool().view(*labels.shape, *([1] * (cams.ndim - 2)))
    return (cams >= thresholds.view(shape)) & gate


def collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack every field (images, labels, masks, soft targets, kinds)."""
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]) for k in samples[0]}
