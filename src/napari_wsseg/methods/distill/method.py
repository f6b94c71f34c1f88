"""Distill-to-Label (Thiagarajan et al.): slide tiles as a MIL bag, teacher then student.

The teacher is a gated-attention MIL net trained on slide labels with VAT-style
regularisation (eq. 3); the student, same architecture, learns from the labels and
from the frozen teacher at bag and tile level (eq. 5). ``predict`` shows the
student's tile probabilities and the teacher's attention as one-pixel-per-tile maps
placed over the slide. Networks: :mod:`.nets`; losses: :mod:`.losses`;
tiling: :mod:`..tiling`; inference: :mod:`.predict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_wsseg.io import open_slide, slide_levels
from napari_wsseg.methods.base import Maps, Method, Stage, unwrap
from napari_wsseg.methods.distill.nets import DistillModel
from napari_wsseg.methods.tiling import TileBag, collect_tiles

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem

# Teacher weights of eq. (3) per data set (Section IV-A); the student's are shared.
PRESETS: dict[str, dict[str, Any]] = {
    "colon": {"lambda_c": 1.0, "lambda_n": 0.5, "lambda_delta": 0.3, "lambda_e": 0.3,
              "n_subsets": 1, "tile": 27},
    "breast": {"lambda_c": 0.8, "lambda_n": 0.8, "lambda_delta": 0.3, "lambda_e": 0.3,
               "n_subsets": 5, "tile": 32},
}  # fmt: skip


@dataclass
class DistillConfig:
    """Defaults from the paper's breast set (32x32 tiles, 5 realisations of X-bar).

    Use :meth:`preset` for the colon values. ``delta`` is the RMS radius per pixel of
    the X_delta ball; ``noise_frac`` the number of noise tiles in X_n per real tile;
    ``max_bag`` caps the tiles sampled from a slide per step (CPU budget).
    """

    # tiling
    tile: int = 32
    level: int = 0
    white: int = 220
    max_background: float = 0.75
    max_bag: int = 128
    cache_mb: int = 256
    label: str = "tumor"
    # network
    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 32)
    hidden: int = 128
    feat_dim: int = 64
    attn_dim: int = 32
    pixel_mean: float = 0.5  # inputs standardised inside the net: (x - mean) / std
    pixel_std: float = 0.25
    # teacher, eq. (3)
    vat: bool = True
    lambda_c: float = 0.8
    lambda_n: float = 0.8
    lambda_delta: float = 0.3
    lambda_e: float = 0.3
    n_subsets: int = 5
    noise_frac: float = 0.5
    delta: float = 0.05
    subset_min: float = 0.5
    subset_max: float = 0.9
    # student, eq. (4)-(5)
    gamma_c: float = 0.3
    gamma_b: float = 0.5
    gamma_i: float = 0.5
    gamma_e: float = 0.1
    tau: float = 2.0
    student_init: str = "teacher"  # or "random"
    # ours, not the paper's: stage ``masks`` = the student's eq. (5) plus BCE + soft
    # Dice of its tile probabilities against tiles of expert / corrected masks
    # (nets.py); 0 steps unless a fine-tune or --steps asks for it
    mask_steps: int = 0
    mask_weight: float = 1.0
    # optimisation (paper: Adam, lr 1e-4, batch 1)
    teacher_steps: int = 2000
    student_steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 1
    # inference
    predict_batch: int = 512
    threshold: float = 0.5
    # ours (the paper makes no slide mask): the mask of a slide whose bag probability
    # is below ``threshold`` is empty, by the MIL assumption the teacher is trained
    # under (a negative bag holds no positive instance); docs/methods/distill.md
    gate_mask: bool = True

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DistillConfig:
        """The paper's settings for ``'colon'`` or ``'breast'``, plus overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


class SlideBags(torch.utils.data.Dataset):
    """One bag per slide; each access samples up to ``max_bag`` of its foreground tiles.

    Samples: ``tiles`` (k, C, t, t) float in [0, 1] and ``label`` (float 0/1); with
    ``tile_targets`` (a grid-shaped 0/1 map per bag, or None) also ``tile_label`` (k,)
    and ``tile_weight`` (1 for a slide with an expert or corrected mask, else 0).
    Sampling uses torch's RNG, which the engine seeds (per worker).
    """

    def __init__(
        self, bags: list[TileBag], labels: list[float], max_bag: int,
        tile_targets: list[np.ndarray | None] | None = None,
    ) -> None:  # fmt: skip
        if len(bags) != len(labels):
            raise ValueError("one label per bag expected")
        self.tile_targets = tile_targets or [None] * len(bags)
        empty = [b.meta.get("path", i) for i, b in enumerate(bags) if len(b) == 0]
        if empty:
            raise ValueError(f"slides without foreground tiles: {empty}")
        self.bags, self.labels, self.max_bag = bags, labels, max_bag

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        bag = self.bags[i]
        n = len(bag)
        idx = torch.randperm(n)[: self.max_bag].numpy() if n > self.max_bag else np.arange(n)
        idx = np.sort(idx)
        target = self.tile_targets[i]
        if target is None:
            tl, tw = torch.zeros(len(idx)), torch.tensor(0.0)
        else:
            tl = torch.from_numpy(target[bag.rows[idx], bag.cols[idx]].astype(np.float32))
            tw = torch.tensor(1.0)
        return {"tiles": tiles_to_tensor(bag.read(idx)), "tile_label": tl, "tile_weight": tw,
                "label": torch.tensor(float(self.labels[i]))}  # fmt: skip


def tiles_to_tensor(tiles: np.ndarray) -> torch.Tensor:
    """uint8 (n, t, t, C) -> float (n, C, t, t) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float() / 255.0


def pad_bags(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack bags of different sizes: zero-padded ``tiles`` (B, K, C, t, t) and ``mask``."""
    k = max(s["tiles"].shape[0] for s in samples)
    shape = samples[0]["tiles"].shape[1:]
    tiles = torch.zeros((len(samples), k, *shape))
    mask = torch.zeros((len(samples), k), dtype=torch.bool)
    for b, s in enumerate(samples):
        tiles[b, : len(s["tiles"])] = s["tiles"]
        mask[b, : len(s["tiles"])] = True
    label = torch.stack([torch.as_tensor(s["label"]).float() for s in samples])
    out = {"tiles": tiles, "mask": mask, "label": label}
    if all("tile_label" in s for s in samples):
        out["tile_label"] = torch.zeros((len(samples), k))
        for b, s in enumerate(samples):
            out["tile_label"][b, : len(s["tile_label"])] = s["tile_label"]
        out["tile_weight"] = torch.stack([torch.as_tensor(s["tile_weight"]) for s in samples])
    return out


class DistillToLabel(Method):
    """Teacher (MIL + VAT, eq. 3) then student (distillation, eq. 5) on slide tiles."""

    name = "distill"
    modality = "slide"
    Config = DistillConfig

    def build_model(self) -> torch.nn.Module:
        return DistillModel(self.config)

    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("teacher", c.teacher_steps, c.batch_size, c.lr),
                Stage("student", c.student_steps, c.batch_size, c.lr),
                Stage("masks", c.mask_steps, c.batch_size, c.lr)]  # fmt: skip

    def bag_of(self, image: ImageData) -> TileBag:
        """The foreground tiles of a slide at the configured level and size."""
        c = self.config
        bag = collect_tiles(slide_levels(image), c.tile, c.level, c.white, c.max_background,
                            cache_bytes=c.cache_mb * 2**20)  # fmt: skip
        bag.meta["path"] = image.meta.get("path", "")
        return bag

    def dataset(
        self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module
    ) -> torch.utils.data.Dataset:
        """Slides with a known label (``config.label``), one bag each; in stage
        ``masks`` the tile targets of the slides with an accepted mask."""
        from napari_wsseg.io import read_mask
        from napari_wsseg.methods.tiling import tile_labels

        bags, labels, targets = [], [], []
        for it in items:
            if it.modality != "slide" or self.config.label not in it.labels:
                continue
            image = open_slide(it.path)
            image.meta.setdefault("path", it.path)
            bags.append(self.bag_of(image))
            labels.append(float(it.labels[self.config.label]))
            use = stage.name == "masks" and it.mask
            targets.append(tile_labels(read_mask(it.mask), bags[-1].grid) if use else None)
        if not bags:
            raise ValueError(f"no slide with a {self.config.label!r} label to train on")
        return SlideBags(bags, labels, self.config.max_bag, targets)

    def collate(self, samples: list[Any]) -> Any:
        return pad_bags(samples)

    def trainable(self, model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
        """Teacher stage: the teacher; student and masks: the student (teacher frozen)."""
        part = getattr(unwrap(model), "student" if stage.name == "masks" else stage.name)
        return [p for p in part.parameters() if p.requires_grad]

    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        from napari_wsseg.methods.distill.predict import predict_slide

        return predict_slide(unwrap(model), image, self.config)

    def validate(self, model: torch.nn.Module, items: list[SnapshotItem]) -> dict[str, float]:
        from napari_wsseg.methods.distill.predict import validate_slides

        return validate_slides(self, unwrap(model), items)

    def describe(self) -> dict[str, Any]:
        """The config as a plain dict (for logs)."""
        return dataclasses.asdict(self.config)


METHOD = DistillToLabel
