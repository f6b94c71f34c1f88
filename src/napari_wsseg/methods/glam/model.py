"""The GLAM model: global + local + fusion modules and the losses of its three stages.

Stages (Sec. 3.3): ``global`` trains f_g with L_g (eq. 1); ``local`` trains f_l on
patches chosen by the frozen f_g (random patches on negative images) with
L_l = BCE(y, y_l) + lambda sum|S_l| and concatenation aggregation; ``joint`` trains
everything with L_g + L_l + L_f, attention aggregation and the fusion layer.
The CAM baseline (``cam=True``) has the single stage ``global`` with BCE only.

Stage ``masks`` is ours, not the paper's (GLAM trains on image labels only, so a
corrected mask could not change it): the joint losses plus, for the images with an
expert or corrected mask, BCE + soft Dice (:mod:`..mask_loss`) of S_g (upsampled to
the working size's 1/4 grid) and of the patch maps A against the mask, weighted by
``mask_weight``. The quick retrain runs it (docs/training.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_wsseg.methods.glam.nets import (
    GatedAttention,
    GlobalNet,
    LocalNet,
    l1_saliency,
    top_t_pool,
)
from napari_wsseg.methods.glam.patches import (
    combine_scales,
    crop_patches,
    random_positions,
    select_patches,
    write_back,
)
from napari_wsseg.methods.mask_loss import bce_dice


def _bce(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """BCE averaged over the known (weight 1) labels; unknown labels weigh 0."""
    pred = pred.clamp(1e-6, 1 - 1e-6)
    loss = F.binary_cross_entropy(pred, target, reduction="none")
    if weight is None:
        return loss.mean()
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def x_hw(t: torch.Tensor) -> tuple[int, int]:
    """The spatial size (H, W) of a (B, C, H, W) tensor."""
    return int(t.shape[-2]), int(t.shape[-1])


class GLAMModel(nn.Module):
    """GLAM (or the CAM baseline) built from a :class:`GLAMConfig`."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        n = len(cfg.classes)
        self.global_net = GlobalNet(tuple(cfg.global_widths), tuple(cfg.global_blocks), n, cfg.cam)
        if not cfg.cam:
            self.local_net = LocalNet(tuple(cfg.local_widths), tuple(cfg.local_blocks), n)
            self.attention = GatedAttention(self.local_net.z_dim, cfg.attention_hidden)
            self.fusion = nn.Linear(self.global_net.z_dim + self.local_net.z_dim, n)

    # --- building blocks ------------------------------------------------------
    def global_out(self, x: torch.Tensor) -> dict[str, Any]:
        """Maps S0..S2, per-scale predictions y_n, y_g, S_g and z_g for images x."""
        out = self.global_net(x)
        if self.cfg.cam:
            out["s_g"] = out["maps"][0]
            out["y_g"] = out["y"]
            return out
        out["y_n"] = [top_t_pool(s, self.cfg.global_top_t) for s in out["maps"]]
        out["y_g"] = torch.stack(out["y_n"], 0).mean(0)
        out["s_g"] = combine_scales(out["maps"], tuple(self.cfg.scale_weights))
        return out

    def positions(self, s_g: torch.Tensor, x: torch.Tensor, k: int, positive: torch.Tensor | None):
        """Algorithm 1 on S_g; random positions for images with a negative label."""
        hw = tuple(x.shape[-2:])
        patch = self.cfg.patch_size
        pos = select_patches(s_g.detach(), hw, patch, k, self.local_net.stride)
        if positive is not None and not bool(positive.all()):
            rnd = random_positions(x.shape[0], k, hw, patch, self.local_net.stride).to(pos.device)
            pos = torch.where(positive[:, None, None], pos, rnd)
        return pos

    def local_out(self, x: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patch maps A (B, K, C, m, m), patch predictions y_k and features z_k."""
        b, k = pos.shape[:2]
        out = self.local_net(crop_patches(x, pos, self.cfg.patch_size))
        maps = out["maps"].reshape(b, k, *out["maps"].shape[1:])
        return {"maps": maps, "z": out["z"].reshape(b, k, -1)}

    def aggregate_concat(self, maps: torch.Tensor) -> torch.Tensor:
        """Concatenation aggregation: top t% pooling over the K maps laid side by side
        (pooling ignores layout, so over all K*m*m values per class)."""
        b, k, c, m, m2 = maps.shape
        joined = maps.permute(0, 2, 1, 3, 4).reshape(b, c, k * m, m2)
        return top_t_pool(joined, self.cfg.local_top_t)

    def aggregate_attention(self, maps: torch.Tensor, z: torch.Tensor):
        """Gated attention: y_l = sum alpha_k y_k, z_l = sum alpha_k z_k (Sec. 3.2)."""
        alpha = self.attention(z)  # (B, K)
        y_k = top_t_pool(maps, self.cfg.local_top_t)  # (B, K, C)
        y_l = (alpha[..., None] * y_k).sum(1)
        z_l = (alpha[..., None] * z).sum(1)
        return y_l, z_l, alpha

    # --- training ---------------------------------------------------------------
    def forward(
        self, batch: dict[str, torch.Tensor], stage: str = "global"
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch for ``stage``; ``"loss"`` is the total."""
        x, y = batch["image"], batch["label"].float()
        weight = batch.get("label_weight")
        lam = self.cfg.l1_weight
        if stage == "global":
            g = self.global_out(x)
            if self.cfg.cam:
                loss = _bce(g["y_g"], y, weight)
                return {"loss": loss, "bce": loss.detach()}
            return self._global_loss(g, y, weight)
        if self.cfg.cam:
            raise ValueError(f"the CAM baseline has only the 'global' stage, not {stage!r}")
        positive = (y * (weight if weight is not None else 1.0)).amax(1) > 0
        if stage == "local":
            was = self.global_net.training
            self.global_net.eval()  # frozen: batch-norm statistics stay as trained
            with torch.no_grad():
                s_g = self.global_out(x)["s_g"]
            self.global_net.train(was)
            loc = self.local_out(x, self.positions(s_g, x, self.cfg.k_train, positive))
            bce = _bce(self.aggregate_concat(loc["maps"]), y, weight)
            l1 = l1_saliency(loc["maps"])
            return {"loss": bce + lam * l1, "bce_l": bce.detach(), "l1_l": l1.detach()}
        if stage in ("joint", "masks"):
            g = self.global_out(x)
            lg = self._global_loss(g, y, weight)
            pos = self.positions(g["s_g"], x, self.cfg.k_train, positive)
            loc = {**self.local_out(x, pos), "pos": pos}
            y_l, z_l, _ = self.aggregate_attention(loc["maps"], loc["z"])
            l_l = _bce(y_l, y, weight) + lam * l1_saliency(loc["maps"])
            y_f = torch.sigmoid(self.fusion(torch.cat([g["z"], z_l], 1)))
            l_f = _bce(y_f, y, weight)
            total = lg["loss"] + l_l + l_f
            out = {"l_g": lg["loss"].detach(), "l_l": l_l.detach(), "l_f": l_f.detach()}
            if stage == "masks" and "mask" in batch:
                terms = self.mask_loss(g["s_g"], loc["maps"], loc["pos"], batch)
                total = total + self.cfg.mask_weight * terms.pop("loss")
                out.update(terms)
            return {"loss": total, **out}
        raise ValueError(f"unknown GLAM stage {stage!r}; expected global, local, joint or masks")

    def mask_loss(self, s_g: torch.Tensor, maps: torch.Tensor, pos: torch.Tensor, batch):
        """Ours (stage ``masks``): BCE + soft Dice of S_g and of the patch maps A
        (B, K, C, m, m) against the batch's masks (B, C, H, W), for masked images."""
        target, weight = batch["mask"].to(s_g.dtype), batch["mask_weight"]
        grid = tuple(s // self.local_net.stride for s in x_hw(target))
        s_up = F.interpolate(s_g, size=grid, mode=self.cfg.upsample)
        glob = bce_dice(s_up, F.interpolate(target, size=grid, mode="area"), weight)
        b, k, c, m, _ = maps.shape
        crops = crop_patches(target, pos, self.cfg.patch_size)  # (B*K, C, p, p)
        t_loc = F.interpolate(crops, size=(m, m), mode="area").reshape(b, k, c, m, m)
        w_loc = weight[:, None].expand(b, k).reshape(-1)
        loc = bce_dice(maps.reshape(b * k, c, m, m), t_loc.reshape(b * k, c, m, m), w_loc)
        return {"loss": glob["loss"] + loc["loss"], "mask_bce": glob["mask_bce"] + loc["mask_bce"],
                "mask_dice": glob["mask_dice"] + loc["mask_dice"]}  # fmt: skip

    def _global_loss(self, g: dict[str, Any], y: torch.Tensor, weight) -> dict[str, torch.Tensor]:
        """Eq. 1: sum over scales of BCE(y, y_n) + lambda * sum |S_n|."""
        bce = sum(_bce(p, y, weight) for p in g["y_n"])
        l1 = sum(l1_saliency(s) for s in g["maps"])
        return {"loss": bce + self.cfg.l1_weight * l1, "bce_g": bce.detach(), "l1_g": l1.detach()}

    # --- inference ----------------------------------------------------------------
    @torch.no_grad()
    def infer(self, x: torch.Tensor, m: int | None = None) -> dict[str, torch.Tensor]:
        """Everything :meth:`GLAMMethod.predict` shows, for (B, 1, H, W) images.

        Returns S_g (on S0's grid), and unless CAM: S_l and S_c on the local grid
        (H/4, W/4), patch positions, y_g, y_l (attention) and y_f (fusion).
        """
        g = self.global_out(x)
        out = {"s_g": g["s_g"], "y_g": g["y_g"]}
        if self.cfg.cam:
            return out
        m = self.cfg.m_infer if m is None else m
        stride = self.local_net.stride
        pos = self.positions(g["s_g"], x, m, None)
        loc = self.local_out(x, pos)
        grid = (-(-x.shape[-2] // stride), -(-x.shape[-1] // stride))
        s_l = write_back(loc["maps"], pos, grid, stride)
        s_g_up = F.interpolate(g["s_g"], size=grid, mode=self.cfg.upsample)
        gc = self.cfg.gamma_c
        y_l, z_l, _ = self.aggregate_attention(loc["maps"], loc["z"])
        y_f = torch.sigmoid(self.fusion(torch.cat([g["z"], z_l], 1)))
        out.update(s_l=s_l, s_c=gc * s_g_up + (1 - gc) * s_l, pos=pos, y_l=y_l, y_f=y_f)
        return out
