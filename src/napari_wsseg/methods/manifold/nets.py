"""Networks of the manifold-attention method (Adiga et al., Sec. 2.1 and 3.2).

- :class:`TruncatedResNet`: MONAI's 2D ResNet (bottleneck blocks, random weights) cut
  after its third residual stage, so the attention map keeps a stride of 16.
- :class:`AttentionModule`: three 3x3 convolutions (128, 32, 1 filters), ReLU between,
  sigmoid at the end: a_i = A(f_i) (eq. 1).
- :class:`AttentiveEmbedder`: f_i * a_i, global average pooling, dense layer to R^d.
- :class:`Classifier`: the Grad-CAM baseline (same backbone, GAP, linear head).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TruncatedResNet(nn.Module):
    """A 2D ResNet stem plus its first three residual stages (no stage 4, no head).

    ``layers=(3, 4, 6)`` and ``widths=(64, 128, 256)`` with bottleneck blocks are
    ResNet-50's first three stages (1024 output channels); smaller values give a
    CPU-sized network of the same shape. ``stem_stride=2`` with the max pool is the
    standard stride-16 network; ``stem_stride=1`` without it gives stride 4, for
    small images. ``dilate_last=True`` replaces the third stage's stride 2 by
    dilation (DeepLab's "output stride"), halving the stride (16 -> 8, 4 -> 2): finer
    attention / Grad-CAM maps for small images.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6),
        widths: Sequence[int] = (64, 128, 256),
        block: str = "bottleneck",
        in_channels: int = 3,
        stem_stride: int = 2,
        max_pool: bool = True,
        dilate_last: bool = False,
    ) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        if len(layers) != 3 or len(widths) != 3:
            raise ValueError(f"need 3 stages, got layers={layers}, widths={widths}")
        # MONAI always builds a fourth stage: give it one tiny block and drop it.
        net = ResNet(
            block=block,
            layers=[*layers, 1],
            block_inplanes=[*widths, 8],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=stem_stride,
            no_max_pool=not max_pool,
            feed_forward=False,
        )
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act)
        self.pool = net.maxpool if max_pool else nn.Identity()
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        if dilate_last:
            _dilate(self.layer3)
        expansion = 4 if block == "bottleneck" else 1
        self.out_channels = int(widths[2] * expansion)
        self.stride = stem_stride * (2 if max_pool else 1) * (2 if dilate_last else 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        return self.layer3(self.layer2(self.layer1(x)))


def _dilate(stage: nn.Module) -> None:
    """Stride 1 instead of 2 in ``stage``; its later 3x3 convs get dilation 2.

    As torchvision's ``replace_stride_with_dilation``: the first block keeps
    dilation 1 (it only loses its stride), the following blocks see the same field
    of view as in the strided network through a dilation of 2.
    """
    for b, blk in enumerate(stage.children()):
        for m in blk.modules():
            if not isinstance(m, nn.Conv2d):
                continue
            if m.stride != (1, 1):
                m.stride = (1, 1)
            elif b > 0 and m.kernel_size == (3, 3):
                m.dilation, m.padding = (2, 2), (2, 2)


class AttentionModule(nn.Module):
    """Eq. 1: a_i = A(f_i) in (0, 1)^(m x n), three 3x3 convs (128, 32, 1 filters)."""

    def __init__(self, in_channels: int, filters: Sequence[int] = (128, 32, 1)) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        c = in_channels
        for i, f in enumerate(filters):
            mods.append(nn.Conv2d(c, f, kernel_size=3, padding=1))
            if i < len(filters) - 1:
                mods.append(nn.ReLU(inplace=True))
            c = f
        if c != 1:
            raise ValueError(f"the attention module must end with 1 filter, got {filters}")
        self.body = nn.Sequential(*mods)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(B, c, m, n) features -> (B, 1, m, n) attention."""
        return torch.sigmoid(self.body(f))


class AttentiveEmbedder(nn.Module):
    """F_theta: image -> R^d through attention-weighted GAP (Fig. 1)."""

    def __init__(
        self,
        backbone: TruncatedResNet,
        embedding_dim: int = 128,
        attention_filters: Sequence[int] = (128, 32, 1),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = AttentionModule(backbone.out_channels, attention_filters)
        self.fc = nn.Linear(backbone.out_channels, embedding_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unnormalised embedding (B, d) and attention map (B, 1, m, n)."""
        f = self.backbone(x)
        a = self.attention(f)
        pooled = (f * a).mean(dim=(2, 3))
        return self.fc(pooled), a


class Classifier(nn.Module):
    """Grad-CAM baseline: same truncated backbone, GAP and a linear head to C logits."""

    def __init__(self, backbone: TruncatedResNet, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def build_unet(features: Sequence[int], in_channels: int = 3) -> nn.Module:
    """MONAI BasicUNet with two output channels (background, lesion) for eq. 3."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=2, in_channels=in_channels, out_channels=2, features=tuple(features)
    )
