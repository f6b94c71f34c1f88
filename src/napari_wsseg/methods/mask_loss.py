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
    prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, smooth: float = 1.0
) -> dict[str, torch.Tensor]:
    """Mean BCE and soft Dice loss of probabilities against soft targets in [0, 1].

    ``prob`` / ``target``: (B, C, *spatial); ``weight``: (B,) 1 for an image with a
    mask, 0 for one without (it adds nothing). Per image: BCE = mean over classes and
    pixels; Dice loss = mean over classes of 1 - (2 sum pt + s) / (sum p + sum t + s)
    (``smooth`` s keeps an empty target defined: it then pulls sum p to 0). Both are
    averaged over the images with weight, and are 0 (with a graph) when none has one.
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
    bce_m, dice_m = (bce * w).sum() / n, (dice * w).sum() / n
    return {"loss": bce_m + dice_m, "mask_bce": bce_m.detach(), "mask_dice": dice_m.detach()}
