"""CheXseg (Gadgil et al. 2021): expert masks + Grad-CAM pseudo-labels for chest X-rays.

Stages (mode ``chexseg``): ``classifier`` trains the multi-label classifier on the 10
image-level findings (masked BCE); ``segmentation`` first copies the classifier's
encoder into the DeepLabv3+ network (Sec. 4.3: classifier initialisation is best),
computes Grad-CAM pseudo-labels from the frozen classifier with per-class thresholds
chosen on the expert images (App. A.1), then trains with the p-mixing sampler
(expert example with probability p, default 0.9, Sec. 4.1) and class-average Dice.

Mode ``distill`` (Sec. 4.2, App. B.4): ``classifier`` (for the encoder), ``teacher``
(fully supervised on the expert masks), ``student`` trained on every image against
the frozen teacher's outputs with BCE at sigmoid temperature tau = 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_wsseg.methods.base import Maps, Method, Stage, unwrap
from napari_wsseg.methods.chexseg.data import (
    ListDataset,
    PMixSampler,
    class_ious,
    collate,
    label_vector,
    load_xray_mask,
    pseudo_masks,
    select_thresholds,
    xray_input,
)
from napari_wsseg.methods.chexseg.nets import CheXsegModel
from napari_wsseg.methods.saliency import ALIGNS, explain
from napari_wsseg.study.vocab import CHEST_FINDINGS

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


@dataclass
class CheXsegConfig:
    """Defaults from the paper (App. B) where it gives them; sizes for CPU otherwise."""

    backbone: str = "densenet121"  # 'densenet121' (paper's classifier) | 'resnet18' | 'small'
    mode: str = "chexseg"  # 'chexseg' | 'distill'
    image_size: int = 256
    p_expert: float = 0.9  # probability of drawing an expert-mask example
    seg_channels: int = 256  # DeepLabv3+ ASPP/decoder width
    tau: float = 10.0  # distillation sigmoid temperature (App. B.4)
    classifier_steps: int = 2000
    classifier_batch: int = 16
    classifier_lr: float = 1e-4
    seg_steps: int = 2000
    seg_batch: int = 8
    seg_lr: float = 1e-3
    default_threshold: float = 0.5  # Grad-CAM cut when no expert image shows a finding
    explain_batch: int = 8
    cam_layer: str = ""  # Grad-CAM target layer of the classifier; '' = its 'act' (last)
    # Grad-CAM cells on their receptive fields' centres ('interpolate': MONAI's grid,
    # 7.5 px off for the stride-16 'small' encoder; see methods/saliency.py)
    cam_align: str = "receptive_field"


class CheXseg(Method):
    """Semi-supervised multi-label X-ray segmentation (see the module docstring)."""

    name = "chexseg"
    modality = "xray"
    Config = CheXsegConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if self.config.mode not in ("chexseg", "distill"):
            raise ValueError(f"mode {self.config.mode!r}; expected 'chexseg' or 'distill'")
        if self.config.cam_align not in ALIGNS:
            raise ValueError(f"cam_align {self.config.cam_align!r}; expected one of {ALIGNS}")
        self._images: dict[str, torch.Tensor] = {}

    # --- model and stages -----------------------------------------------------------
    def build_model(self) -> CheXsegModel:
        c = self.config
        return CheXsegModel(
            c.backbone, len(CHEST_FINDINGS), c.seg_channels, c.mode == "distill", c.tau
        )

    def stages(self) -> list[Stage]:
        c = self.config
        out = [Stage("classifier", c.classifier_steps, c.classifier_batch, c.classifier_lr)]
        if c.mode == "chexseg":
            return out + [Stage("segmentation", c.seg_steps, c.seg_batch, c.seg_lr)]
        return out + [
            Stage("teacher", c.seg_steps, c.seg_batch, c.seg_lr),
            Stage("student", c.seg_steps, c.seg_batch, c.seg_lr),
        ]

    def trainable(self, model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
        m = unwrap(model)
        part = {"classifier": m.classifier, "teacher": m.teacher}.get(stage.name, m.segmenter)
        return list(part.parameters())

    # --- data -------------------------------------------------------------------------
    def image(self, item: SnapshotItem) -> torch.Tensor:
        """The item's (1, S, S) network input, cached per path."""
        if item.path not in self._images:
            from napari_wsseg.io import read_image

            img = read_image(item.path, modality=item.modality)
            self._images[item.path] = xray_input(img, self.config.image_size, item.path)
        return self._images[item.path]

    def _stack(self, items: list[SnapshotItem]) -> torch.Tensor:
        return torch.stack([self.image(it) for it in items])

    def _cams(self, model: CheXsegModel, x: torch.Tensor) -> torch.Tensor:
        """Grad-CAM maps (N, 10, S, S) in [0, 1] of the frozen classifier, in batches."""
        b, dev = self.config.explain_batch, _device(model)
        layer, align = self.config.cam_layer or None, self.config.cam_align
        out = [
            explain(
                model.classifier, x[i : i + b].to(dev), target_layer=layer, align=align
            ).maps.cpu()
            for i in range(0, len(x), b)
        ]
        return torch.cat(out) if out else torch.zeros(0, len(CHEST_FINDINGS), *x.shape[2:])

    def dataset(
        self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module
    ) -> torch.utils.data.Dataset:
        m: CheXsegModel = unwrap(model)
        size = self.config.image_size
        if stage.name == "classifier":
            samples = []
            for it in items:
                lab, known = label_vector(it)
                if known.any():
                    samples.append({"image": self.image(it), "labels": lab, "known": known})
            return ListDataset(samples)
        experts = [it for it in items if it.mask]
        if stage.name == "teacher":
            m.init_from_classifier("teacher")
            return ListDataset(
                [
                    {"image": self.image(it), "mask": load_xray_mask(it.mask, size)}
                    for it in experts
                ]
            )
        if stage.name == "student":
            m.init_from_classifier("segmenter")
            return self._student_dataset(m, items)
        if stage.name != "segmentation":
            raise ValueError(f"unknown CheXseg stage {stage.name!r}")
        m.init_from_classifier("segmenter")
        weak = [it for it in items if not it.mask and label_vector(it)[1].any()]
        gts = [load_xray_mask(it.mask, size) for it in experts]
        thresholds = torch.full((len(CHEST_FINDINGS),), self.config.default_threshold)
        if experts:
            labels = torch.stack([label_vector(it)[0] for it in experts])
            cams = self._cams(m, self._stack(experts))
            thresholds, _ = select_thresholds(
                cams, torch.stack(gts), labels, default=self.config.default_threshold
            )
        m.cam_thresholds.copy_(thresholds)
        samples = [
            {"image": self.image(it), "mask": g, "expert": 1} for it, g in zip(experts, gts)
        ]
        b = self.config.explain_batch
        for i in range(0, len(weak), b):
            chunk = weak[i : i + b]
            x = self._stack(chunk)
            labels = torch.stack([label_vector(it)[0] for it in chunk])
            masks = pseudo_masks(self._cams(m, x), labels, thresholds)
            samples += [{"image": xi, "mask": mi, "expert": 0} for xi, mi in zip(x, masks)]
        ds = ListDataset(samples)
        ds.n_expert, ds.n_weak = len(experts), len(samples) - len(experts)
        return ds

    def _student_dataset(self, m: CheXsegModel, items: list[SnapshotItem]) -> ListDataset:
        """Every image with the frozen teacher's logits at stride 4 (soft targets)."""
        samples = []
        m.teacher.eval()
        with torch.no_grad():
            for it in items:
                x = self.image(it)
                soft = m.teacher.logits_lowres(x[None].to(_device(m)))[0].cpu().half()
                samples.append({"image": x, "soft": soft})
        return ListDataset(samples)

    def sampler(
        self, dataset: torch.utils.data.Dataset, stage: Stage, generator: torch.Generator
    ) -> torch.utils.data.Sampler | None:
        if stage.name != "segmentation":
            return None
        p = self.config.p_expert
        return PMixSampler(dataset.n_expert, dataset.n_weak, p, len(dataset), generator)

    def collate(self, samples: list[Any]) -> Any:
        batch = collate(samples)
        if "soft" in batch:
            batch["soft"] = batch["soft"].float()
        return batch

    # --- inference ----------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        m: CheXsegModel = unwrap(model)
        m.eval()
        x = xray_input(image, self.config.image_size)[None].to(_device(m))
        c = self.config
        res = explain(m.classifier, x, target_layer=c.cam_layer or None, align=c.cam_align)
        with torch.no_grad():
            prob = torch.sigmoid(m.segmenter(x))
        shape = tuple(image.spatial_shape)
        names = list(CHEST_FINDINGS)

        def full(t: torch.Tensor) -> np.ndarray:
            t = F.interpolate(t, size=shape, mode="bilinear", align_corners=False)
            return t[0].clamp(0, 1).float().cpu().numpy()

        probs = torch.sigmoid(res.logits[0].float()).tolist()
        return Maps(
            maps={"gradcam": full(res.maps), "mask_prob": full(prob)},
            classes={"gradcam": names, "mask_prob": names},
            probabilities={n: float(p) for n, p in zip(names, probs)},
            mask="mask_prob",
            threshold=0.5,
        )

    def segment(self, model: torch.nn.Module, items: list[SnapshotItem]) -> torch.Tensor:
        """(N, 10, S, S) mask probabilities at the network's resolution."""
        m: CheXsegModel = unwrap(model)
        m.eval()
        dev = _device(m)
        with torch.no_grad():
            return torch.cat(
                [torch.sigmoid(m.segmenter(self.image(it)[None].to(dev))).cpu() for it in items]
            )

    def validate(self, model: torch.nn.Module, items: list[SnapshotItem]) -> dict[str, float]:
        """Per-finding IoU (masks at 0.5, pooled over the images) and their mean, mIoU."""
        from napari_wsseg.metrics import iou

        with_gt = [it for it in items if it.mask or it.reference_mask]
        if not with_gt:
            return {}
        pred = self.segment(model, with_gt) >= 0.5
        size = self.config.image_size
        gt = torch.stack([load_xray_mask(it.mask or it.reference_mask, size) for it in with_gt])
        out = {}
        for c, name in enumerate(CHEST_FINDINGS):
            if gt[:, c].any() or pred[:, c].any():
                out[f"iou_{name}"] = iou(pred[:, c].numpy(), gt[:, c].numpy())
        out["miou"] = float(np.mean(list(out.values()))) if out else 1.0
        return out


def _device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights live (inputs built on the CPU are moved there)."""
    return next(model.parameters()).device


# keep the per-image helper importable for benchmarks and tests
__all__ = ["CheXseg", "CheXsegConfig", "class_ious"]

METHOD = CheXseg
