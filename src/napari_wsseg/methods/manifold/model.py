"""The trainable module of the manifold-attention method: one ``nn.Module`` whose
``forward(batch, stage=...)`` returns the stage's losses (engine/DDP contract).

Stages: ``metric`` (plain margin loss, ML), ``metric_dcml`` (one learner per batch on
its sub-space) then ``metric_full`` (full embedding), ``classifier`` (Grad-CAM
baseline), ``unet`` (eq. 3 on proxy masks).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_wsseg.methods.manifold.collapse import class_attention_means
from napari_wsseg.methods.manifold.losses import embedding_margin_loss, subspace_slices
from napari_wsseg.methods.manifold.nets import (
    AttentiveEmbedder,
    Classifier,
    TruncatedResNet,
    build_unet,
)

MODES = ("attention", "gradcam", "supervised")


def normalise_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 1] float) images -> zero-centred floats."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return (x - 0.5) / 0.25


class ManifoldNet(nn.Module):
    """Embedder with attention (or the baseline classifier), class centroids and U-Net."""

    def __init__(self, cfg: Any, n_classes: int) -> None:
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"manifold: mode must be one of {MODES}, got {cfg.mode!r}")
        self.mode, self.n_classes = cfg.mode, n_classes
        self.alpha = float(cfg.alpha)
        self.cutoff, self.nonzero_cutoff = float(cfg.dw_cutoff), float(cfg.dw_nonzero_cutoff)
        self.dim = int(cfg.embedding_dim)
        self.slices = subspace_slices(self.dim, int(cfg.n_learners)) if cfg.dcml else []
        self.embedder: AttentiveEmbedder | None = None
        self.classifier: Classifier | None = None
        if cfg.mode != "supervised":
            backbone = TruncatedResNet(
                layers=cfg.layers,
                widths=cfg.widths,
                block=cfg.block,
                stem_stride=cfg.stem_stride,
                max_pool=cfg.max_pool,
                dilate_last=cfg.dilate_last,
            )
            if cfg.mode == "attention":
                self.embedder = AttentiveEmbedder(backbone, self.dim, cfg.attention_filters)
            else:
                self.classifier = Classifier(backbone, n_classes)
        # beta of eq. 2: fixed at 1.2 as in the paper, or learnt (Wu et al.) when asked.
        beta = torch.tensor(float(cfg.beta))
        if cfg.learn_beta:
            self.beta = nn.Parameter(beta)
        else:
            self.register_buffer("beta", beta)
        # Class centroids on the unit sphere, set when the U-Net stage starts (predict).
        self.register_buffer("centroids", torch.zeros(n_classes, self.dim))
        self.unet = build_unet(cfg.unet_features)

    # --- training ---------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        x = normalise_input(batch["image"])
        if stage.startswith("metric"):
            return self._metric_losses(x, batch, dcml=stage == "metric_dcml")
        if stage == "classifier":
            assert self.classifier is not None, "classifier stage needs mode='gradcam'"
            ce = F.cross_entropy(self.classifier(x), batch["label"])
            return {"loss": ce, "ce": ce.detach()}
        if stage == "unet":
            # Eq. 3: pixel-wise softmax cross-entropy against the (proxy) mask.
            ce = F.cross_entropy(self.unet(x), batch["mask"])
            return {"loss": ce, "ce": ce.detach()}
        raise ValueError(f"manifold: unknown stage {stage!r}")

    def _metric_losses(
        self, x: torch.Tensor, batch: dict[str, torch.Tensor], dcml: bool
    ) -> dict[str, torch.Tensor]:
        assert self.embedder is not None, "metric stages need mode='attention'"
        emb, att = self.embedder(x)
        labels = batch["label"]
        if not dcml:
            loss, active = embedding_margin_loss(
                emb, labels, self.alpha, self.beta, self.cutoff, self.nonzero_cutoff
            )
        else:
            # DCML: each sample trains the sub-space of the learner its batch came from.
            learners = batch["learner"]
            parts, active = [], torch.zeros((), dtype=torch.long)
            for k in torch.unique(learners).tolist():
                sel = learners == k
                # A batch not drawn by the DCML sampler (learner -1) trains the full space.
                sub = emb[sel][:, self.slices[k] if 0 <= k < len(self.slices) else slice(None)]
                part, act = embedding_margin_loss(
                    sub, labels[sel], self.alpha, self.beta, self.cutoff, self.nonzero_cutoff
                )
                parts.append(part)
                active = active + act
            loss = torch.stack(parts).mean()
        return {
            "loss": loss,
            "margin": loss.detach(),
            "active_pairs": active.detach().float(),
            "attention_mean": att.detach().mean(),
            # (C,) per-class means, NaN where absent: not a scalar, so not logged as a
            # loss; the method's collapse monitor reads it (ManifoldAttention.warnings).
            "class_attention": class_attention_means(att, labels, self.n_classes),
        }

    # --- inference helpers ------------------------------------------------------------
    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """L2-normalised embeddings (N, d) and attention maps (N, m, n) of uint8 images,
        in eval mode (the training flag is restored)."""
        assert self.embedder is not None
        was = self.training
        self.eval()
        embs, atts = [], []
        try:
            for i in range(0, len(images), batch_size):
                x = normalise_input(images[i : i + batch_size]).to(self.centroids.device)
                e, a = self.embedder(x)
                embs.append(F.normalize(e, dim=1).cpu())
                atts.append(a[:, 0].cpu())
        finally:
            self.train(was)
        return torch.cat(embs).numpy(), torch.cat(atts).numpy()

    def set_centroids(self, emb: np.ndarray, labels: np.ndarray) -> None:
        """Mean normalised embedding per class, renormalised (probabilities at predict)."""
        cents = torch.zeros(self.n_classes, self.dim)
        for c in range(self.n_classes):
            if np.any(labels == c):
                cents[c] = F.normalize(torch.from_numpy(emb[labels == c]).mean(0), dim=0)
        self.centroids.copy_(cents)

    def class_probabilities(self, emb: torch.Tensor, temperature: float) -> torch.Tensor:
        """softmax_k(-||z - c_k||² / tau) over the class centroids (nearest-centroid rule)."""
        z = F.normalize(emb, dim=1)
        d2 = (z.unsqueeze(1) - self.centroids.unsqueeze(0)).pow(2).sum(-1)
        return torch.softmax(-d2 / temperature, dim=1)
