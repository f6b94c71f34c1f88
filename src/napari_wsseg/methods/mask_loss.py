"""BCE + soft Dice of a segmentation output against expert or corrected masks.

Ours, not any paper's: GLAM and Distill-to-Label learn from image labels only, so a
mask the user corrects could not change them. Their ``masks`` fine-tune stage adds
this loss on their own segmentation output (GLAM's saliency maps, Distill's tile
probabilities) for the images that have a mask, on top of the method's weak loss
(partial supervision: the weak labels of every image still count). See
docs/training.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-6


def bce_dice(
    prob: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    smooth: float = 1.0,
    dice_on_empty: bool = True,
) -> dict[str, torch.Tensor]:
    """Mean BCE and soft Dice loss of probabilities against soft targets in [0, 1].

    ``prob`` / ``target``: (B, C, *spatial); ``weight``: (B,) 1 for an image with a
    mask, 0 for one without (it adds nothing). Per image: BCE = mean over classes and
    pixels; Dice loss = mean over classes of 1 - (2 sum pt + s) / (sum p + sum t + s)
    (``smooth`` s keeps an empty target defined: it then pulls sum p to 0). Both are
    averaged over the images with weight, and are 0 (with a graph) when none has one.

    ``dice_on_empty=False`` leaves the Dice term out for an image whose target is empty
    (BCE still counts it; the Dice mean is over the images with target). An empty
    target's Dice loss is 1 - s / (sum p + s): near 1 for any sum of probabilities
    much above s, whatever side of the threshold they are on, so it grades
    probability mass, not the mask (Distill: 0.97 on a normal slide whose 128 tiles
    are all below 0.5, see docs/training.md).
    """
    if prob.shape != target.shape:
        raise ValueError(f"prediction {tuple(prob.shape)} and mask {tuple(target.shape)} differ")
    b, c = prob.shape[:2]
    p = prob.reshape(b, c, -1).clamp(EPS, 1 - EPS)
    t = target.reshape(b, c, -1).to(p.dtype)
    w = weight.reshape(b).to(p.dtype)
    bce = F.binary_cross_entropy(p, t, reduction="none").mean((1, 2))
    inter = (p * t).sum(-1)
    dice = 1 - (2 * inter + smooth) / (p.sum(-1) + t.sum(-1) + smooth)
    dice = dice.mean(1)
    n = w.sum()
    if float(n) == 0:
        zero = prob.sum() * 0.0
        return {"loss": zero, "mask_bce": zero.detach(), "mask_dice": zero.detach()}
    wd = w if dice_on_empty else w * (t.sum((1, 2)) > 0).to(w.dtype)
    bce_m = (bce * w).sum() / n
    dice_m = (dice * wd).sum() / wd.sum() if float(wd.sum()) > 0 else dice.sum() * 0.0
    return {"loss": bce_m + dice_m, "mask_bce": bce_m.detach(), "mask_dice": dice_m.detach()}
