"""CheXseg networks: encoders, the multi-label classifier and a DeepLabv3+ head.

Encoders are split into ``low`` (stride 4, DeepLabv3+'s low-level features) and
``high`` (the rest, stride 32 for DenseNet121/ResNet18, 16 for the small CNN), so the
classifier and the segmentation network share one layout and the segmentation
encoder can be initialised from the classifier's weights (CheXseg Sec. 4.3).
DenseNet121 and ResNet18 come from MONAI (random weights, nothing downloads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BACKBONES = ("densenet121", "resnet18", "small")


class Encoder(nn.Module):
    """``low`` then ``high``; returns both feature maps."""

    def __init__(self, low: nn.Module, high: nn.Module, low_channels: int, channels: int):
        super().__init__()
        self.low, self.high = low, high
        self.low_channels, self.channels = low_channels, channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(x)
        return low, self.high(low)


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def make_encoder(backbone: str, in_channels: int = 1) -> Encoder:
    """A fresh encoder: ``densenet121`` (paper), ``resnet18`` or ``small`` (CPU)."""
    if backbone == "densenet121":
        from monai.networks.nets import DenseNet121

        f = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1).features
        return Encoder(f[:5], f[5:], 256, 1024)  # pool0+denseblock1 | transition1..norm5
    if backbone == "resnet18":
        from monai.networks.nets import resnet18

        r = resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=1, conv1_t_stride=2)
        low = nn.Sequential(r.conv1, r.bn1, r.act, r.maxpool, r.layer1)
        return Encoder(low, nn.Sequential(r.layer2, r.layer3, r.layer4), 64, 512)
    if backbone == "small":
        low = nn.Sequential(_conv_bn(in_channels, 16, 2), _conv_bn(16, 32, 2), _conv_bn(32, 32))
        high = nn.Sequential(_conv_bn(32, 64, 2), _conv_bn(64, 64), _conv_bn(64, 128, 2))
        return Encoder(low, high, 32, 128)
    raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")


class Classifier(nn.Module):
    """Encoder -> ReLU ('act', the Grad-CAM layer) -> global average pool -> linear."""

    saliency_layer = "act"

    def __init__(self, encoder: Encoder, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(encoder.channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.encoder(x)[1])).flatten(1))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3): 1x1, three dilated 3x3, image pooling.

    The rates default to (2, 4, 6), not DeepLab's (6, 12, 18) at output stride 16:
    our encoders run at stride 32 on small X-rays (8x8 maps at 256 px), where larger
    rates would only see padding. The pooling branch has no BatchNorm (a 1x1 map).
    """

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (2, 4, 6)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn(cin, cout, k=1)] + [_conv_bn(cin, cout, dilation=r) for r in rates]
        )
        self.pooled = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = _conv_bn(cout * (len(rates) + 2), cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        pooled = self.pooled(F.adaptive_avg_pool2d(x, 1))
        outs.append(pooled.expand(-1, -1, *x.shape[2:]))
        return self.project(torch.cat(outs, 1))


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (Chen et al. 2018): ASPP on the encoder output, a decoder that joins
    the stride-4 low-level features, logits at stride 4 upsampled to the input."""

    def __init__(
        self, encoder: Encoder, n_classes: int, channels: int = 256, low_reduced: int = 48
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.aspp = ASPP(encoder.channels, channels)
        self.reduce = _conv_bn(encoder.low_channels, low_reduced, k=1)
        self.decoder = nn.Sequential(
            _conv_bn(channels + low_reduced, channels), _conv_bn(channels, channels)
        )
        self.head = nn.Conv2d(channels, n_classes, 1)

    def logits_lowres(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class logits at the low-level features' grid (stride 4)."""
        low, high = self.encoder(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.head(self.decoder(torch.cat([y, self.reduce(low)], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.logits_lowres(x)
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the known image-level labels only (missing = 0 weight)."""
    per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (per * known).sum() / known.sum().clamp_min(1.0)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """CheXseg App. B.4: BCE between sigmoid(student/tau) and sigmoid(teacher/tau)."""
    target = torch.sigmoid(teacher.detach() / tau)
    return F.binary_cross_entropy_with_logits(student / tau, target)


class CheXsegModel(nn.Module):
    """Classifier + segmentation network (+ teacher in distillation mode).

    ``forward(batch, stage)`` returns the stage's losses (engine contract).
    ``initialised`` records which segmentation encoders were already copied from the
    classifier, so a resumed stage does not overwrite trained weights.
    """

    def __init__(
        self,
        backbone: str,
        n_classes: int,
        channels: int = 256,
        distill: bool = False,
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        from monai.losses import DiceLoss

        self.classifier = Classifier(make_encoder(backbone), n_classes)
        self.segmenter = DeepLabV3Plus(make_encoder(backbone), n_classes, channels)
        self.teacher = (
            DeepLabV3Plus(make_encoder(backbone), n_classes, channels) if distill else None
        )
        self.tau = tau
        # class-average Dice: per class over batch and pixels, then the mean over classes
        self.dice = DiceLoss(sigmoid=True, batch=True)
        self.register_buffer("initialised", torch.zeros(2))
        self.register_buffer("cam_thresholds", torch.full((n_classes,), float("nan")))

    def init_from_classifier(self, which: str) -> bool:
        """Copy the classifier's encoder into ``segmenter`` or ``teacher`` once."""
        i = {"segmenter": 0, "teacher": 1}[which]
        if self.initialised[i] > 0:
            return False
        getattr(self, which).encoder.load_state_dict(self.classifier.encoder.state_dict())
        self.initialised[i] = 1.0
        return True

    def forward(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        x = batch["image"]
        if stage == "classifier":
            loss = masked_bce(self.classifier(x), batch["labels"], batch["known"])
            return {"loss": loss, "bce": loss.detach()}
        if stage in ("segmentation", "teacher"):
            net = self.segmenter if stage == "segmentation" else self.teacher
            loss = self.dice(net(x), batch["mask"].float())
            return {"loss": loss, "dice_loss": loss.detach()}
        if stage == "student":
            loss = distill_loss(self.segmenter.logits_lowres(x), batch["soft"], self.tau)
            return {"loss": loss, "distill": loss.detach()}
        raise ValueError(f"unknown CheXseg stage {stage!r}")
