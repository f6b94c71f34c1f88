"""GLAM's networks and poolings (Liu et al., MIDL 2022, Sec. 3.2 and App. B/C).

* :class:`GlobalNet`: a memory-efficient ResNet-like backbone with reduced channels
  (as GMIC's global network) giving feature maps h0, h1, h2 at strides 16, 32, 64;
  a 1x1 conv + sigmoid on each gives the saliency maps S0, S1, S2 (App. B, Fig. 6).
  With ``cam=True`` the same backbone ends in global average pooling + a linear
  layer instead: the CAM baseline of Table 1 (Zhou et al., 2016).
* :class:`LocalNet`: a ResNet-34 layout whose residual stages all have stride 1
  (App. C), so a patch's saliency map keeps 1/4 of the patch resolution.
* :func:`top_t_pool` (App. B), :func:`l1_saliency` (the sparsity term of eq. 1) and
  :class:`GatedAttention` (Ilse et al., 2018) used by the local module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def top_t_pool(maps: torch.Tensor, t_percent: float) -> torch.Tensor:
    """Top t% pooling (App. B): the mean of the ``ceil(t% * n)`` largest of the n
    values on the last two (spatial) axes. ``(..., H, W) -> (...)``."""
    flat = maps.flatten(-2)
    n = flat.shape[-1]
    k = top_t_count(n, t_percent)
    return flat.topk(k, dim=-1).values.mean(-1)


def top_t_count(n: int, t_percent: float) -> int:
    """|H+| of App. B for a map of n values: at least one value."""
    if not 0.0 < t_percent <= 100.0:
        raise ValueError(f"top t% pooling needs 0 < t <= 100, got {t_percent}")
    return max(1, min(n, int(-(-n * t_percent // 100))))


def l1_saliency(maps: torch.Tensor) -> torch.Tensor:
    """The sparsity term of eq. 1, sum_(i,j) |S(i, j)|, summed over classes (and
    patches: any axes after the batch axis) and averaged over the batch."""
    return maps.abs().flatten(1).sum(1).mean()


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity/1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        skip = x if self.short is None else self.short(x)
        return F.relu(out + skip, inplace=True)


def _stage(cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride)]
    layers += [BasicBlock(cout, cout, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _stem(cout: int) -> nn.Sequential:
    """7x7 conv stride 2 + max-pool stride 2 (ResNet's stem): stride 4 overall."""
    return nn.Sequential(
        nn.Conv2d(1, cout, 7, 2, 3, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    )


class GlobalNet(nn.Module):
    """Global module f_g: five residual stages (strides 1, 2, 2, 2, 2 after the
    stride-4 stem), the last three giving h0 (/16), h1 (/32) and h2 (/64).

    ``forward`` returns ``maps``: [S0, S1, S2] (B, C, h_n, w_n) in [0, 1], and ``z``:
    the spatial max of h2 (App. B). With ``cam`` the maps are CAM's class activation
    maps through a sigmoid, sigmoid(W h2 + b), from the linear layer on GAP(h2).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64, 128, 256),
        blocks: tuple[int, ...] = (1, 1, 1, 1, 1),
        n_classes: int = 2,
        cam: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(blocks) != 5:
            raise ValueError("GlobalNet needs 5 widths and 5 block counts")
        self.stem = _stem(widths[0])
        strides = (1, 2, 2, 2, 2)
        cins = (widths[0],) + tuple(widths[:-1])
        self.stages = nn.ModuleList(
            _stage(ci, co, b, s) for ci, co, b, s in zip(cins, widths, blocks, strides)
        )
        self.cam = cam
        self.z_dim = widths[-1]
        if cam:
            self.fc = nn.Linear(widths[-1], n_classes)
        else:
            self.heads = nn.ModuleList(nn.Conv2d(w, n_classes, 1) for w in widths[2:])

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h0, h1, h2] for a (B, 1, H, W) image."""
        h = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i >= 2:
                feats.append(h)
        return feats

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        feats = self.features(x)
        h2 = feats[-1]
        z = h2.amax(dim=(-2, -1))
        if self.cam:
            # CAM: y = sigmoid(W GAP(h2) + b) = sigmoid(GAP(W h2 + b)); map = sigmoid(W h2 + b).
            logits = torch.einsum("bdhw,cd->bchw", h2, self.fc.weight)
            logits = logits + self.fc.bias[None, :, None, None]
            y = torch.sigmoid(self.fc(h2.mean(dim=(-2, -1))))
            return {"maps": [torch.sigmoid(logits)], "y": y, "z": z}
        maps = [torch.sigmoid(head(h)) for head, h in zip(self.heads, feats)]
        return {"maps": maps, "z": z}


class LocalNet(nn.Module):
    """Local module f_l: ResNet-34 layout (3, 4, 6, 3 basic blocks) with stride 1 in
    every residual stage (App. C); depth and width are configurable for CPU.

    ``forward`` on (N, 1, p, p) patches returns ``maps`` A_k (N, C, p/4, p/4) in [0, 1]
    and ``z``: the spatial max of the last features (the patch representation z_k).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 48, 64),
        blocks: tuple[int, ...] = (3, 4, 6, 3),
        n_classes: int = 2,
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError("LocalNet needs one width per stage")
        self.stem = _stem(widths[0])
        cins = (widths[0],) + tuple(widths[:-1])
        self.stages = nn.Sequential(
            *(_stage(ci, co, b, 1) for ci, co, b in zip(cins, widths, blocks))
        )
        self.head = nn.Conv2d(widths[-1], n_classes, 1)
        self.z_dim = widths[-1]

    stride = 4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.stages(self.stem(x))
        return {"maps": torch.sigmoid(self.head(h)), "z": h.amax(dim=(-2, -1))}


class GatedAttention(nn.Module):
    """Gated attention MIL pooling (Ilse et al., 2018, eq. 9):
    a_k = w^T (tanh(V z_k) * sigmoid(U z_k)), alpha = softmax_k(a)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Weights alpha (B, K) for patch representations z (B, K, D)."""
        a = self.w(torch.tanh(self.v(z)) * torch.sigmoid(self.u(z))).squeeze(-1)
        return torch.softmax(a, dim=-1)
