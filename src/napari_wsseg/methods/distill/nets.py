"""Distill-to-Label networks: tile CNN, gated attention pooling (eq. 1-2), MIL net.

The teacher and the student share this architecture (Section III-C). The bag
output is one logit ``l``; the paper's two-class ``softmax(z)`` equals
``sigmoid(l)`` with ``l = z_1 - z_0``, and its softened ``softmax(z / tau)`` equals
``sigmoid(l / tau)`` (eq. 4), so one logit loses nothing.
"""

from __future__ import annotations

import torch
from torch import nn


class TileCNN(nn.Module):
    """Per-tile feature extractor Phi: x_k -> h_k (Section IV: conv + ReLU + max-pool
    blocks, then fully connected layers; the classifier adds the third FC layer)."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: tuple[int, ...] = (16, 32, 32),
        hidden: int = 128,
        feat_dim: int = 64,
        pixel_mean: float = 0.5,
        pixel_std: float = 0.25,
    ) -> None:
        super().__init__()
        # Fixed input standardisation inside the net, so the losses' perturbations
        # (noise tiles, the X_delta ball, clipping) stay in image space [0, 1]. Without
        # it (raw [0, 1] inputs, H&E mean ~0.85) attention MIL on the slide phantoms
        # drifted back to chance at lr 1e-3 (see docs/methods/distill.md).
        self.pixel_mean, self.pixel_std = float(pixel_mean), float(pixel_std)
        layers: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            layers += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            prev = ch
        # A fixed 2x2 output makes the extractor work for 8x8 digits, 27x27 and 32x32 tiles.
        layers.append(nn.AdaptiveMaxPool2d(2))
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(prev * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, feat_dim),
            nn.ReLU(inplace=True),
        )
        self.out_dim = feat_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, C, t, t) tiles in [0, 1] -> (K, d) features."""
        return self.fc(self.conv((x - self.pixel_mean) / self.pixel_std))


class GatedAttention(nn.Module):
    """Gated attention scores of eq. (2): e_k = w^T (tanh(V h_k) * sigm(U h_k)).

    The softmax over a bag's e_k gives weights a_k that sum to 1; the pooled bag
    feature is z = sum_k a_k h_k (eq. 1).
    """

    def __init__(self, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.V = nn.Linear(dim, hidden, bias=False)
        self.U = nn.Linear(dim, hidden, bias=False)
        self.w = nn.Linear(hidden, 1, bias=False)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """(K, d) -> (K,) unnormalised attention logits e_k."""
        return self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, d) -> pooled z (d,) and weights a (K,) (eq. 1-2)."""
        a = torch.softmax(self.scores(h), dim=0)
        return a @ h, a


class MILNet(nn.Module):
    """Attention MIL: Phi per tile, gated attention pooling, one linear classifier."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: tuple[int, ...] = (16, 32, 32),
        hidden: int = 128,
        feat_dim: int = 64,
        attn_dim: int = 32,
        pixel_mean: float = 0.5,
        pixel_std: float = 0.25,
    ) -> None:
        super().__init__()
        self.features = TileCNN(in_channels, channels, hidden, feat_dim, pixel_mean, pixel_std)
        self.attention = GatedAttention(feat_dim, attn_dim)
        self.classifier = nn.Linear(feat_dim, 1)

    def pool(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bag logit and attention weights from features (K, d)."""
        z, a = self.attention(h)
        return self.classifier(z).squeeze(-1), a

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A bag (K, C, t, t) -> bag logit () and attention weights (K,)."""
        return self.pool(self.features(x))

    def instance_logits_from(self, h: torch.Tensor) -> torch.Tensor:
        """Each instance as a bag of size 1: a = 1 so z = h_k; (K, d) -> (K,)."""
        return self.classifier(h).squeeze(-1)

    def instance_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of each tile of (K, C, t, t) passed alone as a bag of size 1."""
        return self.instance_logits_from(self.features(x))


class DistillModel(nn.Module):
    """Teacher and student in one module; ``forward(batch, stage)`` returns losses.

    ``batch``: ``tiles`` (B, K, C, t, t) float in [0, 1], ``mask`` (B, K) bool
    (True = real tile; bags shorter than K are padded), ``label`` (B,) 0/1.
    Stage ``teacher`` computes eq. (3), stage ``student`` eq. (5) with the teacher
    frozen (no gradient, not in the optimiser).
    """

    def __init__(self, config: object) -> None:
        super().__init__()
        self.config = config
        kw = {
            "in_channels": config.in_channels,
            "channels": tuple(config.channels),
            "hidden": config.hidden,
            "feat_dim": config.feat_dim,
            "attn_dim": config.attn_dim,
            "pixel_mean": getattr(config, "pixel_mean", 0.5),
            "pixel_std": getattr(config, "pixel_std", 0.25),
        }
        self.teacher = MILNet(**kw)
        self.student = MILNet(**kw)
        # 1 once the student was started from the teacher (saved with checkpoints).
        self.register_buffer("student_started", torch.zeros((), dtype=torch.uint8))

    def start_student(self) -> None:
        """Copy the trained teacher into the student before its first step when
        ``config.student_init == 'teacher'`` (the paper does not say how the student
        starts; starting from the teacher keeps its tile predictions as the
        starting point). In place, so an optimiser built on the student stays valid."""
        if int(self.student_started) == 0:
            if getattr(self.config, "student_init", "random") == "teacher":
                self.student.load_state_dict(self.teacher.state_dict())
            self.student_started.fill_(1)

    def _with_mask_loss(self, terms: dict, x: torch.Tensor, batch: dict, b: int, mask) -> dict:
        """Ours (stage ``masks``): eq. (5) + mask_weight * BCE/soft Dice of the student's
        tile probabilities (each tile alone, as ``mask_prob``) against the tile labels
        of the bag's expert or corrected mask (weight 0 for a slide without one).

        No Dice term for a slide whose mask has no tumour tile (BCE only): there the
        soft Dice loss is 1 - 1 / (sum p + 1), ~0.97 for a normal slide that the
        shipped student gets right (128 tiles at p ~0.2, all below 0.5), and its pull
        of every tile towards 0 shrank the tumours of the held-out slides (bench_loop:
        0.92 -> 0.87 after 80 steps with every pool slide corrected; docs/training.md).
        """
        from napari_wsseg.methods.mask_loss import bce_dice

        target = batch["tile_label"][b]
        if mask is not None:
            target = target[mask[b].bool()]
        prob = torch.sigmoid(self.student.instance_logits(x))
        weight = batch["tile_weight"][b][None]
        extra = bce_dice(prob[None, None], target[None, None], weight, dice_on_empty=False)
        out = dict(terms)
        out["loss"] = terms["loss"] + float(self.config.mask_weight) * extra.pop("loss")
        out.update(extra)
        return out

    def forward(self, batch: dict[str, torch.Tensor], stage: str = "teacher") -> dict:
        from napari_wsseg.methods.distill.losses import student_loss, teacher_loss

        if stage not in ("teacher", "student", "masks"):
            raise ValueError(f"unknown stage {stage!r}; expected teacher, student or masks")
        tiles, label = batch["tiles"], batch["label"].float()
        mask = batch.get("mask")
        totals: dict[str, torch.Tensor] = {}
        for b in range(tiles.shape[0]):
            x = tiles[b] if mask is None else tiles[b][mask[b].bool()]
            if stage == "teacher":
                terms = teacher_loss(self.teacher, x, label[b], self.config)
            else:
                self.start_student()
                self.teacher.eval()
                terms = student_loss(self.student, self.teacher, x, label[b], self.config)
                if stage == "masks" and "tile_label" in batch:
                    terms = self._with_mask_loss(terms, x, batch, b, mask)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v / tiles.shape[0]
        return totals
