"""A small but real method for the engine's tests: a 2-layer conv segmenter.

Image-level BCE through spatial max pooling on every item, plus a soft Dice loss on
the items that carry an expert mask (partial supervision). Two stages: ``classify``
trains everything, ``refine`` only the last conv (exercises ``trainable``). Dropout
and random flips use the global RNGs, so exact resume needs their states restored.
Images go through ``read_image`` (RGB becomes grey in [0, 1]) and masks through
``read_mask``, so it trains on the tests' float TIFFs and on the demo study's skin PNGs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from torch import nn

from napari_wsseg.methods import register_method
from napari_wsseg.methods.base import Maps, Method, Stage
from napari_wsseg.study.snapshot import Snapshot, SnapshotItem

# How the engine finds this method: a registered name (``register_method`` below in this
# process; ``NAPARI_WSSEG_METHODS`` in the subprocesses the tests start, see TOY_ENV).
TOY = "toy"
TOY_ENV = "toy=wsseg_toymethod:ToyMethod"

LABEL = "lesion"


@dataclass
class ToyConfig:
    channels: int = 8
    steps: tuple[int, int] = (12, 6)
    batch_size: int = 4
    lr: float = 0.02
    dice_weight: float = 1.0
    dropout: float = 0.1
    flip: bool = True
    sleep_s: float = 0.0


class ToyNet(nn.Module):
    def __init__(self, channels: int, dropout: float, dice_weight: float, sleep_s: float):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.drop = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(channels, 1, 3, padding=1)
        self.dice_weight = dice_weight
        self.sleep_s = sleep_s

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.drop(torch.relu(self.conv1(x))))

    def forward(self, batch: dict, stage: str = "classify") -> dict[str, torch.Tensor]:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        logit_map = self.logits(batch["image"])[:, 0]
        image_logit = logit_map.flatten(1).amax(1)
        bce = nn.functional.binary_cross_entropy_with_logits(image_logit, batch["label"])
        has = batch["has_mask"]
        if bool(has.any()):
            p = torch.sigmoid(logit_map[has]).flatten(1)
            g = batch["mask"][has].flatten(1)
            dice = 1 - ((2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)).mean()
        else:
            dice = logit_map.sum() * 0.0
        return {"loss": bce + self.dice_weight * dice, "bce": bce, "dice": dice}


def grey(data) -> np.ndarray:
    """A float (Y, X) image: RGB uint8 becomes its mean / 255."""
    arr = np.asarray(data)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return (arr.astype(np.float32).mean(-1) / 255.0).astype(np.float32)
    return arr.astype(np.float32)


def label_of(it: SnapshotItem) -> float:
    """The item's lesion label: ``lesion`` or, for other vocabularies, any positive label."""
    if LABEL in it.labels:
        return float(it.labels[LABEL])
    return float(max((v or 0 for v in it.labels.values()), default=0))


class ToyDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[SnapshotItem], flip: bool) -> None:
        self.items, self.flip = items, flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        from napari_wsseg.io import read_image, read_mask

        it = self.items[i]
        img = grey(read_image(it.path, modality=it.modality).data)
        mask = (read_mask(it.mask) > 0).astype(np.float32) if it.mask else np.zeros_like(img)
        if self.flip and np.random.rand() < 0.5:
            img, mask = img[:, ::-1].copy(), mask[:, ::-1].copy()
        return {
            "image": torch.from_numpy(img)[None],
            "mask": torch.from_numpy(mask),
            "label": torch.tensor(label_of(it)),
            "has_mask": torch.tensor(it.mask is not None),
            "index": torch.tensor(i),
        }


class ToyMethod(Method):
    name = "toy"
    modality = "skin"
    Config = ToyConfig

    def build_model(self) -> nn.Module:
        c = self.config
        return ToyNet(c.channels, c.dropout, c.dice_weight, c.sleep_s)

    def stages(self) -> list[Stage]:
        c = self.config
        return [
            Stage("classify", c.steps[0], c.batch_size, c.lr),
            Stage("refine", c.steps[1], c.batch_size, c.lr / 2, 1e-4),
        ]

    def dataset(self, items, stage, model):
        return ToyDataset(items, self.config.flip)

    def trainable(self, model, stage):
        if stage.name == "refine":
            return list(model.conv2.parameters())
        return super().trainable(model, stage)

    def predict(self, model, image) -> Maps:
        x = torch.as_tensor(grey(image.data))[None, None]
        with torch.no_grad():
            feats = torch.relu(model.conv1(x))
            logit = model.conv2(feats)[0, 0]
        prob = torch.sigmoid(logit).numpy()
        att = feats.mean(1)[0].numpy()
        att = (att - att.min()) / (att.max() - att.min() + 1e-8)
        return Maps(
            maps={"mask_prob": prob, "attention": att},
            probabilities={LABEL: float(torch.sigmoid(logit.max()))},
            mask="mask_prob",
            boxes=np.array([[0, 0, 4, 4]], float),
            box_labels=["corner"],
        )

    def validate(self, model, items) -> dict[str, float]:
        from napari_wsseg.metrics import dice_hard

        correct, dices = 0, []
        from napari_wsseg.io import read_image, read_mask

        for it in items:
            img = grey(read_image(it.path, modality=it.modality).data)
            with torch.no_grad():
                logit = model.logits(torch.from_numpy(img)[None, None])[0, 0]
            correct += int((float(logit.max()) > 0) == bool(label_of(it)))
            ref = it.reference_mask or it.mask
            if ref:
                dices.append(dice_hard(torch.sigmoid(logit).numpy(), read_mask(ref) > 0))
        out = {"accuracy": correct / max(1, len(items))}
        if dices:
            out["dice"] = float(np.mean(dices))
        return out


METHOD = ToyMethod
register_method(TOY, ToyMethod)


def make_toy_snapshot(
    root: Path, n: int = 16, n_masks: int = 4, size: int = 16, seed: int = 0, study: str = ""
) -> Path:
    """Write ``n`` tiny images (half with a bright square lesion) and a snapshot JSON."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        img = rng.normal(0, 0.3, (size, size)).astype(np.float32)
        mask = np.zeros((size, size), np.uint8)
        label = i % 2
        if label:
            y, x = rng.integers(2, size - 6, 2)
            mask[y : y + 4, x : x + 4] = 1
            img[mask > 0] += 2.0
        tifffile.imwrite(root / f"img{i:03d}.tif", img)
        tifffile.imwrite(root / f"ref{i:03d}.tif", mask)
        has = label == 1 and sum(1 for it in items if it.mask) < n_masks
        items.append(
            SnapshotItem(
                image_id=i,
                path=str(root / f"img{i:03d}.tif"),
                modality="skin",
                labels={LABEL: label},
                mask=str(root / f"ref{i:03d}.tif") if has else None,
                reference_mask=str(root / f"ref{i:03d}.tif"),
            )
        )
    path = root / "snapshot.json"
    Snapshot(study=study or str(root), items=items).save(path)
    return path
