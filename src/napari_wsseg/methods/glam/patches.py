"""GLAM's patch machinery: Algorithm 1 (App. A), cropping, and writing patch maps back.

Positions are top-left corners (y, x) in pixels of the image the global module saw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def combine_scales(maps: list[torch.Tensor], gammas: tuple[float, ...]) -> torch.Tensor:
    """S_g = sum_n gamma_n S_n (App. B) on the grid of S0 (the finest).

    The paper says S0 and S1 are "upsampled to match the resolution of S2" but S0 is
    the finest (184x120) and App. C calls S_g 184x120: we bring S1 and S2 to S0's
    grid with nearest-neighbour interpolation, which keeps the finest detail.
    """
    if len(maps) != len(gammas):
        raise ValueError(f"{len(maps)} saliency maps but {len(gammas)} weights")
    size = maps[0].shape[-2:]
    out = torch.zeros_like(maps[0])
    for s, g in zip(maps, gammas):
        out = out + g * (
            s if s.shape[-2:] == size else F.interpolate(s, size=size, mode="nearest")
        )
    return out


def minmax_normalise(s: torch.Tensor) -> torch.Tensor:
    """Each (batch, class) map scaled to [0, 1] (Algorithm 1, line 3)."""
    flat = s.flatten(-2)
    lo = flat.amin(-1)[..., None, None]
    hi = flat.amax(-1)[..., None, None]
    return (s - lo) / (hi - lo).clamp_min(1e-12)


def select_windows(saliency: torch.Tensor, window: tuple[int, int], k: int) -> torch.Tensor:
    """Algorithm 1 on the map grid: the top-left cells (B, k, 2) of k greedy windows.

    ``saliency`` (B, C, h, w): min-max normalise each class map, sum over classes,
    then k times take the window of largest sum (window sums for every position at
    once by a stride-1 average pool, then one argmax over the map) and zero it.
    """
    b, _, h, w = saliency.shape
    wh, ww = min(window[0], h), min(window[1], w)
    s_hat = minmax_normalise(saliency.float()).sum(1, keepdim=True)  # (B, 1, h, w)
    rows = torch.arange(h, device=s_hat.device)[:, None]
    cols = torch.arange(w, device=s_hat.device)[None, :]
    picks = []
    for _ in range(k):
        sums = F.avg_pool2d(s_hat, (wh, ww), stride=1)  # (B, 1, h-wh+1, w-ww+1)
        flat = sums.flatten(1).argmax(1)
        iy, ix = flat // sums.shape[-1], flat % sums.shape[-1]
        picks.append(torch.stack([iy, ix], 1))
        inside = (
            (rows[None] >= iy[:, None, None])
            & (rows[None] < (iy + wh)[:, None, None])
            & (cols[None] >= ix[:, None, None])
            & (cols[None] < (ix + ww)[:, None, None])
        )
        s_hat = s_hat.masked_fill(inside[:, None], 0.0)
    return torch.stack(picks, 1)


def select_patches(
    saliency: torch.Tensor, image_hw: tuple[int, int], patch: int, k: int, align: int = 4
) -> torch.Tensor:
    """Algorithm 1: k patch positions (B, k, 2), top-left (y, x) in image pixels.

    The window is the patch's footprint on the map, ``patch * h / H`` cells (line 6);
    a chosen cell maps back by the map-to-image factor (line 10), clamped inside the
    image and rounded down to a multiple of ``align`` (the local net's stride) so the
    patch maps land on whole cells of S_l.
    """
    h, w = saliency.shape[-2:]
    big_h, big_w = image_hw
    fy, fx = big_h / h, big_w / w
    window = (max(1, round(patch / fy)), max(1, round(patch / fx)))
    cells = select_windows(saliency, window, k)
    pos = torch.stack([cells[..., 0] * fy, cells[..., 1] * fx], -1).round().long()
    return clamp_positions(pos, image_hw, patch, align)


def clamp_positions(
    pos: torch.Tensor, image_hw: tuple[int, int], patch: int, align: int = 4
) -> torch.Tensor:
    """Keep patches inside the image; top-left corners on multiples of ``align``."""
    lim = torch.tensor(
        [max(0, image_hw[0] - patch), max(0, image_hw[1] - patch)], device=pos.device
    )
    pos = torch.minimum(pos.clamp_min(0), lim)
    return pos // align * align


def random_positions(
    n: int, k: int, image_hw: tuple[int, int], patch: int, align: int = 4, generator=None
) -> torch.Tensor:
    """k uniformly random patch positions per image (negatives for the local module)."""
    hi_y = max(1, image_hw[0] - patch + 1)
    hi_x = max(1, image_hw[1] - patch + 1)
    y = torch.randint(0, hi_y, (n, k), generator=generator)
    x = torch.randint(0, hi_x, (n, k), generator=generator)
    return clamp_positions(torch.stack([y, x], -1), image_hw, patch, align)


def crop_patches(images: torch.Tensor, pos: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 1, H, W) images and (B, K, 2) positions -> (B*K, 1, p, p) patches (zero
    padded where an image is smaller than a patch)."""
    b, c, big_h, big_w = images.shape
    if big_h < patch or big_w < patch:
        images = F.pad(images, (0, max(0, patch - big_w), 0, max(0, patch - big_h)))
    out = [
        images[i, :, y : y + patch, x : x + patch] for i in range(b) for y, x in pos[i].tolist()
    ]
    return torch.stack(out, 0)


def write_back(
    patch_maps: torch.Tensor, pos: torch.Tensor, grid_hw: tuple[int, int], stride: int
) -> torch.Tensor:
    """S_l: patch maps (B, K, C, m, m) placed at their positions on a (B, C, H/s, W/s)
    grid (image pixels / local-net stride ``stride``); zero elsewhere, max where
    patches overlap."""
    b, k, c, m, _ = patch_maps.shape
    out = patch_maps.new_zeros((b, c) + tuple(grid_hw))
    for i in range(b):
        for j, (y, x) in enumerate(pos[i].tolist()):
            y0, x0 = y // stride, x // stride
            y1, x1 = min(grid_hw[0], y0 + m), min(grid_hw[1], x0 + m)
            region = out[i, :, y0:y1, x0:x1]
            out[i, :, y0:y1, x0:x1] = torch.maximum(
                region, patch_maps[i, j, :, : y1 - y0, : x1 - x0]
            )
    return out
