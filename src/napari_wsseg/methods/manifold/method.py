"""Manifold-driven attention maps as proxy labels (Adiga, Dolz, Lombaert).

An attention module inside a metric-learning network (margin loss, distance-weighted
sampling, divide-and-conquer sub-spaces) trained on image-level classes gives a map
a_i per image; thresholded at T it is the proxy mask a U-Net learns from (eq. 3).
Baselines: Grad-CAM of a plain classifier (``mode='gradcam'``), metric learning
without DCML (``dcml=False``) and a fully supervised U-Net (``mode='supervised'``).
See docs/methods/manifold.md for the equations and the decisions taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_wsseg.methods.base import Maps, Method, Stage, unwrap
from napari_wsseg.methods.manifold.collapse import CollapseMonitor
from napari_wsseg.methods.manifold.data import (
    ClassBalancedSampler,
    DCMLSampler,
    ImageClassDataset,
    MaskDataset,
    class_index,
    image_to_rgb,
    load_item_image,
    load_item_mask,
    resize_mask,
    resize_rgb,
)
from napari_wsseg.methods.manifold.model import ManifoldNet, normalise_input

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


@dataclass
class ManifoldConfig:
    """Defaults from the paper (Sec. 3.2); sizes can shrink for a CPU."""

    mode: str = "attention"  # attention | gradcam (baseline) | supervised (upper bound)
    dcml: bool = True  # False: plain margin-loss metric learning (the "ML" baseline)
    classes: tuple[str, ...] = ()  # empty: the modality's vocabulary
    image_size: int = 224
    layers: tuple[int, ...] = (3, 4, 6)  # ResNet-50's first three stages
    widths: tuple[int, ...] = (64, 128, 256)
    block: str = "bottleneck"
    stem_stride: int = 2
    max_pool: bool = True
    dilate_last: bool = False  # stage 3 dilated instead of strided: half the stride
    attention_filters: tuple[int, ...] = (128, 32, 1)
    embedding_dim: int = 128
    alpha: float = 0.2
    beta: float = 1.2
    learn_beta: bool = False
    dw_cutoff: float = 0.5
    dw_nonzero_cutoff: float = 1.4
    n_learners: int = 4  # DCML's K
    recluster_every: int = 2  # epochs between two k-means re-clusterings
    per_class: int = 8
    metric_steps: int = 20000
    full_fraction: float = 50 / 300  # last 50 of 300 epochs on the full embedding
    metric_lr: float = 1e-4
    threshold: float = 0.5  # T
    attention_norm: str = "none"  # none | minmax (per image, before T)
    unet_features: tuple[int, ...] = (32, 32, 64, 128, 256, 32)
    unet_steps: int = 10000
    unet_batch_size: int = 16
    unet_lr: float = 1e-4
    temperature: float = 0.1  # of the nearest-centroid class probabilities
    collapse_threshold: float = 0.02  # warn when a class's mean attention stays below; 0: off
    seed: int = 0


def upsample(maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(B, K, m, n) -> (B, K, *shape), bilinear."""
    return F.interpolate(maps.float(), size=shape, mode="bilinear", align_corners=False)


def normalise_maps(maps: torch.Tensor, how: str) -> torch.Tensor:
    """Per-map rescaling before the threshold T: 'none' or 'minmax' to [0, 1]."""
    if how == "none":
        return maps
    if how != "minmax":
        raise ValueError(f"manifold: attention_norm must be 'none' or 'minmax', got {how!r}")
    flat = maps.flatten(2)
    lo, hi = flat.min(-1).values[..., None, None], flat.max(-1).values[..., None, None]
    return (maps - lo) / (hi - lo).clamp(min=1e-6)


def gradcam(classifier: torch.nn.Module, x: torch.Tensor, classes: Any = None) -> torch.Tensor:
    """Grad-CAM of the baseline classifier on its last residual stage, (B, K, S, S) in
    [0, 1] (the saliency module's implementation)."""
    from napari_wsseg.methods.saliency import saliency_maps

    return saliency_maps(
        classifier, x, method="gradcam", target_layer="backbone.layer3", classes=classes
    )


class ManifoldAttention(Method):
    """Attention maps from a manifold (metric-learning) network as proxy masks."""

    name = "manifold"
    modality = "skin"
    Config = ManifoldConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.collapse = CollapseMonitor(self.config.collapse_threshold)

    def warnings(self, stage: Stage, losses: dict[str, torch.Tensor]) -> list[str]:
        """Attention collapse (a class's mean attention near 0) in the metric stages."""
        means = losses.get("class_attention")
        if means is None or self.config.collapse_threshold <= 0:
            return []
        return self.collapse.update(stage.name, means, self.class_names())

    def class_names(self) -> tuple[str, ...]:
        from napari_wsseg.study.vocab import labels_for

        return tuple(self.config.classes) or labels_for(self.modality)

    def build_model(self) -> torch.nn.Module:
        return ManifoldNet(self.config, len(self.class_names()))

    def stages(self) -> list[Stage]:
        c = self.config
        metric_bs = c.per_class * len(self.class_names())
        unet = Stage("unet", c.unet_steps, c.unet_batch_size, c.unet_lr)
        if c.mode == "supervised":
            return [unet]
        if c.mode == "gradcam":
            return [Stage("classifier", c.metric_steps, metric_bs, c.metric_lr), unet]
        if not c.dcml:
            return [Stage("metric", c.metric_steps, metric_bs, c.metric_lr), unet]
        full = int(round(c.metric_steps * c.full_fraction))
        return [
            Stage("metric_dcml", c.metric_steps - full, metric_bs, c.metric_lr),
            Stage("metric_full", full, metric_bs, c.metric_lr),
            unet,
        ]

    # --- data -------------------------------------------------------------------------
    def _images(self, items: list[SnapshotItem]) -> torch.Tensor:
        size = self.config.image_size
        return torch.stack(
            [resize_rgb(image_to_rgb(load_item_image(it), it.path), size) for it in items]
        )

    def dataset(
        self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module
    ) -> torch.utils.data.Dataset:
        net = unwrap(model)
        if stage.name == "unet":
            return self._mask_dataset(items, net)
        names = self.class_names()
        labelled = [(it, class_index(it, names)) for it in items]
        labelled = [(it, c) for it, c in labelled if c >= 0]
        present = {c for _, c in labelled}
        if len(present) < 2:
            raise ValueError(
                f"manifold: stage {stage.name!r} needs images of at least two classes among "
                f"{names} (one positive label each); found {sorted(names[c] for c in present)}"
            )
        images = self._images([it for it, _ in labelled])
        return ImageClassDataset(images, np.array([c for _, c in labelled]), model=net)

    def proxy_maps(self, net: ManifoldNet, images: torch.Tensor, labels: np.ndarray) -> np.ndarray:
        """The init maps in [0, 1] at the input size: upsampled attention (or Grad-CAM of
        the image's class, its predicted class when unlabelled)."""
        size = (self.config.image_size,) * 2
        if net.embedder is not None:
            _, att = net.embed(images)
            maps = upsample(torch.from_numpy(att)[:, None], size)
            return normalise_maps(maps, self.config.attention_norm)[:, 0].numpy()
        assert net.classifier is not None
        net.classifier.eval()
        out = []
        for i in range(0, len(images), 32):
            x = normalise_input(images[i : i + 32]).to(net.centroids.device)
            with torch.no_grad():
                pred = net.classifier(x).argmax(1).cpu().numpy()
            cls = np.where(labels[i : i + 32] >= 0, labels[i : i + 32], pred)
            cams = gradcam(net.classifier, x, classes=None).cpu()  # (B, C, S, S)
            out.append(upsample(cams, size)[torch.arange(len(x)), torch.from_numpy(cls)])
        return torch.cat(out).numpy()

    def _mask_dataset(self, items: list[SnapshotItem], net: ManifoldNet) -> MaskDataset:
        c, size = self.config, self.config.image_size
        if c.mode == "supervised":
            items = [it for it in items if it.mask is not None]
            if not items:
                raise ValueError("manifold: mode='supervised' needs items with accepted masks")
        images = self._images(items)
        labels = np.array([class_index(it, self.class_names()) for it in items])
        masks = torch.zeros(len(items), size, size, dtype=torch.uint8)
        if c.mode != "supervised":
            masks = torch.from_numpy(self.proxy_maps(net, images, labels) > c.threshold)
            masks = masks.to(torch.uint8)
            if net.embedder is not None and np.any(labels >= 0):
                emb, _ = net.embed(images[torch.from_numpy(labels >= 0)])
                net.set_centroids(emb, labels[labels >= 0])
        # Partial supervision: an accepted expert mask replaces the proxy mask.
        for i, it in enumerate(items):
            if it.mask is not None:
                masks[i] = resize_mask(load_item_mask(it.mask), size)
        return MaskDataset(images, masks)

    def sampler(
        self, dataset: torch.utils.data.Dataset, stage: Stage, generator: torch.Generator
    ) -> torch.utils.data.Sampler | None:
        if not isinstance(dataset, ImageClassDataset):
            return None
        c = self.config
        if stage.name == "metric_dcml":
            net = dataset.model
            return DCMLSampler(
                dataset.labels,
                embed=lambda: net.embed(dataset.images)[0],
                k=c.n_learners,
                per_class=c.per_class,
                recluster_every=c.recluster_every,
                generator=generator,
                seed=c.seed,
                state=dataset.dcml_state,
            )
        return ClassBalancedSampler(dataset.labels, c.per_class, generator)

    def trainable(self, model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
        net = unwrap(model)
        if stage.name == "unet":
            params = list(net.unet.parameters())
        elif stage.name == "classifier":
            params = list(net.classifier.parameters())
        else:
            params = list(net.embedder.parameters())
            if isinstance(net.beta, torch.nn.Parameter):
                params.append(net.beta)
        return [p for p in params if p.requires_grad]

    # --- inference --------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        net = unwrap(model)
        net.eval()
        names = list(self.class_names())
        rgb = image_to_rgb(image, str(image.meta.get("path", "image")))
        shape = rgb.shape[:2]
        x = normalise_input(resize_rgb(rgb, self.config.image_size)[None])
        x = x.to(net.centroids.device)  # the model's device (a GPU-trained benchmark model)
        out = Maps(mask="mask_prob", threshold=self.config.threshold)
        with torch.no_grad():
            if net.embedder is not None:
                emb, att = net.embedder(x)
                att = normalise_maps(upsample(att, shape), self.config.attention_norm)
                out.maps["attention"] = att[0, 0].cpu().numpy()
                probs = net.class_probabilities(emb, self.config.temperature)[0]
                out.probabilities = {n: float(p) for n, p in zip(names, probs)}
            elif net.classifier is not None:
                probs = torch.softmax(net.classifier(x), dim=1)[0]
                out.probabilities = {n: float(p) for n, p in zip(names, probs)}
            mask = torch.softmax(net.unet(x), dim=1)[:, 1:2]
            out.maps["mask_prob"] = upsample(mask, shape)[0, 0].clamp(0, 1).cpu().numpy()
        if net.classifier is not None:
            cams = upsample(gradcam(net.classifier, x, classes=None), shape)[0]
            out.maps["gradcam"] = cams.clamp(0, 1).detach().cpu().numpy()
            out.classes["gradcam"] = names
        return out

    def validate(self, model: torch.nn.Module, items: list[SnapshotItem]) -> dict[str, float]:
        """Mean hard Dice (at T) of the predicted mask and of the init map, on items with
        a reference or accepted mask, and nearest-centroid/classifier accuracy."""
        dice_mask, dice_init, correct = [], [], []
        names = self.class_names()
        for it in items:
            maps = self.predict(model, load_item_image(it))
            truth_path = it.reference_mask or it.mask
            if truth_path is not None:
                truth = load_item_mask(truth_path) > 0
                dice_mask.append(dice(maps.maps["mask_prob"] > self.config.threshold, truth))
                init = maps.maps.get("attention")
                if init is not None:
                    dice_init.append(dice(init > self.config.threshold, truth))
            cls = class_index(it, names)
            if cls >= 0 and maps.probabilities:
                correct.append(float(np.argmax([maps.probabilities[n] for n in names]) == cls))
        out = {}
        for key, vals in (("dice", dice_mask), ("dice_init", dice_init), ("accuracy", correct)):
            if vals:
                out[key] = float(np.mean(vals))
        return out


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Hard Dice of two binary masks; 1.0 when both are empty."""
    inter = np.logical_and(pred, truth).sum()
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2.0 * inter / total)


METHOD = ManifoldAttention
