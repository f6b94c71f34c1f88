"""IAG-Net's network: one 2D U-Net plus three linear heads per view.

The backbone is MONAI's ``BasicUNet`` with its final 1x1 convolution removed, so
its output is the penultimate layer: C = ``features[-1]`` channels per pixel at the
input resolution (C = 64 in the paper's U-Net variant). The heads are the paper's
bias-free linear maps w_a (attention, eq. 1), w_g (global classifier, eq. 7) and
w_l (local classifier, eqs. 11/14).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_wsseg.methods.iagnet import losses as L

VIEWS = ("axial", "coronal", "sagittal")
VIEW_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}  # slicing axis of a (Z, Y, X) volume
_MULTIPLE = 16  # BasicUNet pools four times


class _Heads(nn.Module):
    """w_a, w_g, w_l in R^C (no bias, as in eqs. 1, 7, 11)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        std = 1.0 / math.sqrt(channels)
        self.w_a = nn.Parameter(torch.randn(channels) * std)
        self.w_g = nn.Parameter(torch.randn(channels) * std)
        self.w_l = nn.Parameter(torch.randn(channels) * std)


class _InstanceNorm(nn.InstanceNorm2d):
    """``InstanceNorm2d`` (same parameters and state dict); without autograd it is one
    ``var_mean`` and one ``addcmul``, which keep channels_last maps in that layout
    (the batch-norm-based kernel does not): ~17 % faster CPU inference, equal to ~1e-5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dim() != 4 or not self.affine:
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        scale = self.weight[:, None, None] * torch.rsqrt(var + self.eps)
        return torch.addcmul(self.bias[:, None, None] - mean * scale, x, scale)


def _unet(features: Sequence[int]) -> nn.Module:
    from monai.networks.nets import BasicUNet

    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1, features=tuple(features))
    net.final_conv = nn.Identity()  # keep the penultimate layer: C = features[-1]
    for mod in net.modules():
        norm = getattr(mod, "N", None)
        if isinstance(norm, nn.InstanceNorm2d) and norm.affine:
            mod.N = _InstanceNorm(norm.num_features, eps=norm.eps, affine=True)
    for up in (net.upcat_4, net.upcat_3, net.upcat_2, net.upcat_1):
        # ``feature_map`` pads inputs to a multiple of 16, so the decoder never needs
        # UpCat's odd-size padding; with it on, a zero-width replicate pad still copies
        # every upsampled map (~4 % of CPU inference). Results are identical.
        up.is_pad = False
    return net


class IAGNetModel(nn.Module):
    """One U-Net and heads per view; ``forward(batch, stage)`` returns the losses (19).

    ``batch`` is a list of samples (dicts from the IAG-Net dataset): ``image``
    (S, 1, H, W) slices of one volume along ``view``, ``mask`` (S, 1, H, W) or None,
    ``label`` 0/1.
    """

    def __init__(
        self,
        views: Sequence[str] = VIEWS,
        features: Sequence[int] = (64, 128, 256, 512, 1024, 64),
        beta: float = 20.0,
        global_loss: bool = True,
        local_loss: bool = True,
        constant_lambda: bool = False,
        unannotated_warmup: int = 0,
        voxel_reduction: str = "sum",
    ) -> None:
        super().__init__()
        bad = [v for v in views if v not in VIEW_AXIS]
        if bad or not views:
            raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {tuple(views)}")
        if len(features) != 6:
            raise ValueError(f"features needs 6 U-Net widths, got {tuple(features)}")
        self.views = tuple(views)
        self.channels = int(features[-1])
        self.beta = float(beta)
        self.use_global = global_loss
        self.use_local = local_loss
        self.constant_lambda = constant_lambda
        self.unannotated_warmup = int(unannotated_warmup)
        if voxel_reduction not in ("sum", "mean"):
            raise ValueError(f"voxel_reduction must be 'sum' or 'mean', got {voxel_reduction!r}")
        self.voxel_reduction = voxel_reduction
        # training forward passes so far (a buffer: saved in checkpoints, synced by DDP)
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.backbones = nn.ModuleDict({v: _unet(features) for v in self.views})
        self.heads = nn.ModuleDict({v: _Heads(self.channels) for v in self.views})

    def feature_map(self, view: str, x: torch.Tensor) -> torch.Tensor:
        """F for slices ``x`` (S, 1, H, W): (S, C, H, W), padded to a multiple of 16 inside."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.backbones[view](x)[..., :h, :w]

    def instance_scores(
        self, view: str, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat features f (N, C), attention logits a (eq. 1) and local logits l (eq. 14)."""
        fmap = self.feature_map(view, x)
        f = fmap.permute(0, 2, 3, 1).reshape(-1, self.channels)
        heads = self.heads[view]
        return f, f @ heads.w_a, f @ heads.w_l

    def forward(
        self, batch: list[dict[str, Any]], stage: str = "iagnet"
    ) -> dict[str, torch.Tensor]:
        g_terms, att_terms, ll_terms, lu_terms = [], [], [], []
        if self.training and torch.is_grad_enabled():
            self.steps_seen += 1
        warm = int(self.steps_seen) > self.unannotated_warmup
        for s in batch:
            view = s["view"]
            f, a, l = self.instance_scores(view, s["image"])
            y = torch.as_tensor(float(s["label"]), device=a.device)
            h = L.attention_pool(a, f)  # (4)-(5)
            g_terms.append(L.global_loss(L.global_logit(h, self.heads[view].w_g), y))  # (6)-(7)
            if float(s["label"]) < 0.5:
                continue  # (16), (18): only volumes with a tumour train the local classifier
            if s.get("mask") is not None:
                ym = s["mask"].reshape(-1)
                red = self.voxel_reduction
                att_terms.append(L.attention_loss(a, ym, red))  # (3)
                ll_terms.append(L.annotated_local_loss(l, ym, red))  # (15)
            elif warm:
                p = L.attention_probability(a)  # (2)
                lam = L.adaptive_lambda(p, self.constant_lambda)  # (16)
                lu_terms.append(lam * L.unannotated_local_loss(l, p))  # (9)-(12)
        zero = g_terms[0].new_zeros(())
        l_global = torch.stack(g_terms).mean() if self.use_global else zero  # (8)
        l_att = torch.stack(att_terms).mean() if att_terms else zero  # (18)
        l_ll = torch.stack(ll_terms).mean() if ll_terms else zero  # (16), first term
        l_lu = torch.stack(lu_terms).mean() if lu_terms else zero  # (16), second term
        if not self.use_local:
            l_att, l_ll, l_lu = zero, zero, zero
        loss = L.total_loss(l_global, l_att, l_ll + l_lu, self.beta)  # (17)-(19)
        # Views and heads a batch did not use still get a (zero) gradient, so that
        # DistributedDataParallel needs no find_unused_parameters.
        loss = loss + 0.0 * sum(p.sum() for p in self.parameters())
        return {
            "loss": loss,
            "global": l_global.detach(),
            "att": l_att.detach(),
            "local_annotated": l_ll.detach(),
            "local_unannotated": l_lu.detach(),
        }
