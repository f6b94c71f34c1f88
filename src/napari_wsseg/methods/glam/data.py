"""Mammogram input for GLAM: 16-bit intensity normalisation, resizing, training samples.

Normalisation (decided here, the paper does not say): an integer mammogram is first
read on its real bit depth (DICOM ``BitsStored`` in ``meta`` when given, otherwise
the smallest depth >= 8 that holds its maximum, so a 12-bit image stored in 16 bits
is not squashed into [0, 1/16]); then [p0.5, top of the bit range] maps to [0, 1], p0.5
computed on a strided subsample (bounded memory). The top is not clipped at a high
percentile: small dense masses are the brightest ~0.1 % of the pixels and a p99.5
clip flattened exactly them (one cause of "no learning" in the first benchmark).
Float input: [p0.5, max]. MONOCHROME1
images (meta ``photometric``) are inverted so dense tissue is bright.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


def bit_depth(array: np.ndarray, meta: dict[str, Any] | None = None) -> int:
    """Bits used by an integer image: ``BitsStored`` from meta, else from its max."""
    meta = meta or {}
    for key in ("bits_stored", "BitsStored"):
        if key in meta:
            return int(meta[key])
    top = int(np.asarray(array).max()) if np.asarray(array).size else 0
    return max(8, int(top).bit_length())


def normalise(
    array: np.ndarray,
    meta: dict[str, Any] | None = None,
    low_percentile: float = 0.5,
    max_samples: int = 1_000_000,
) -> np.ndarray:
    """A 2D mammogram as float32 in [0, 1] (see the module docstring)."""
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(-1)
    if arr.ndim != 2:
        raise ValueError(f"GLAM needs a 2D mammogram, got an array of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        scale = float(2 ** bit_depth(arr, meta) - 1)
    else:
        scale = 1.0
    flat = arr.reshape(-1)
    sample = flat[:: max(1, flat.size // max_samples)].astype(np.float32) / scale
    # the upper bound is the top of the bit range (integers) or the maximum (floats),
    # not a high percentile: masses are the brightest ~0.1 % of a mammogram and a
    # p99.5 clip flattens them; a per-image max would make a normal breast's densest
    # tissue as bright as a mass elsewhere. Only the dark end is windowed.
    lo = float(np.percentile(sample, low_percentile)) if sample.size else 0.0
    hi = 1.0 if scale > 1.0 else float(sample.max(initial=1.0))
    if hi <= lo:
        lo, hi = float(sample.min(initial=0.0)), float(sample.max(initial=1.0))
    if hi <= lo:
        hi = lo + 1.0
    out = arr.astype(np.float32)
    out *= 1.0 / scale
    out -= lo
    out *= 1.0 / (hi - lo)
    np.clip(out, 0.0, 1.0, out=out)
    if str((meta or {}).get("photometric", "")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return out


def to_model_input(
    array: np.ndarray, size: tuple[int, int], meta: dict | None = None
) -> torch.Tensor:
    """Normalise and resize (area averaging) to the model's working size: (1, H, W)."""
    x = torch.from_numpy(normalise(array, meta))[None, None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="area")
    return x[0]


def read_mammogram(path: str | Path) -> ImageData:
    """The image at ``path`` through the package's readers; clear error otherwise."""
    from napari_wsseg.io.base import ImageData, ImageReadError

    try:
        from napari_wsseg.io import read_image  # written by the io engineer
    except ImportError:
        read_image = None
    if read_image is not None:
        return read_image(path, modality="mammo")
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        elif suffix == ".npy":
            data = np.load(path)
        else:
            import skimage.io

            data = skimage.io.imread(path)
    except Exception as err:  # noqa: BLE001 - any reader failure names the file
        raise ImageReadError(path, f"cannot read mammogram: {err}") from err
    return ImageData(data=data, modality="mammo", scale=(1.0, 1.0))


def labels_of(item: SnapshotItem, classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-level labels (C,) and weights (C,): a missing label weighs 0 in the BCE."""
    y = torch.tensor([float(item.labels.get(c, 0.0) or 0.0) for c in classes])
    w = torch.tensor([0.0 if item.labels.get(c) is None else 1.0 for c in classes])
    return y, w


class MammoDataset(torch.utils.data.Dataset):
    """Mammograms resized to the working size with their labels; small inputs cached."""

    def __init__(
        self,
        items: list[SnapshotItem],
        size: tuple[int, int],
        classes: tuple[str, ...],
        cache: bool = True,
    ) -> None:
        self.items = [it for it in items if any(it.labels.get(c) is not None for c in classes)]
        if not self.items:
            raise ValueError(f"no mammogram among {len(items)} items has a label in {classes}")
        self.size = tuple(size)
        self.classes = classes
        self.cache: dict[int, Any] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = read_mammogram(self.items[i].path)
        data = img.data[0] if img.multiscale else img.data
        x = to_model_input(np.asarray(data), self.size, img.meta)
        if self.cache is not None:
            self.cache[i] = x
        return x

    def mask(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The item's accepted (expert or corrected) mask as (C, H, W) class fractions
        at the working size, and its weight: (zeros, 0) when it has none."""
        key = -1 - i  # masks share the image cache under negative keys
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        path = self.items[i].mask
        if path:
            out = (mask_target(path, self.size, len(self.classes)), torch.tensor(1.0))
        else:
            out = (torch.zeros((len(self.classes), *self.size)), torch.tensor(0.0))
        if self.cache is not None:
            self.cache[key] = out
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        y, w = labels_of(self.items[i], self.classes)
        target, m_w = self.mask(i)
        return {"image": self.image(i), "label": y, "label_weight": w,
                "mask": target, "mask_weight": m_w}  # fmt: skip


def mask_target(path: str | Path, size: tuple[int, int], n_classes: int) -> torch.Tensor:
    """A mammogram label mask (1 = malignant, 2 = benign, vocab order) as (C, H, W)
    per-class fractions at the working ``size`` (area averaging). Errors name the file."""
    from napari_wsseg.io import read_mask

    arr = np.asarray(read_mask(path))
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{path}: a mammogram mask must be 2D, got shape {arr.shape}")
    chans = np.stack([arr == c + 1 for c in range(n_classes)]).astype(np.float32)
    t = torch.from_numpy(chans)[None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="area")
    return t[0]
