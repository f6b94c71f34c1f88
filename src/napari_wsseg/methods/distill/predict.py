"""Distill-to-Label inference on a whole slide, streamed tile block by tile block.

Maps (one pixel per tile, placed on level-0 pixels by ``TileGrid.grid()``):

- ``instance_prob``: the student's probability for each tile alone (bag of size 1);
- ``mask_prob``: the same map, named as the mask for the Labels layer;
- ``attention``: the teacher's attention weight a_k over the whole slide (eq. 2),
  divided by the slide's largest weight so the most attended tile is 1 and ratios
  between tiles are kept (raw weights sum to 1 and are too small to display).

Background tiles are 0 in every map and False in ``Maps.valid`` (so evaluation
skips them). The bag probability (``tumor``) is the student's, pooled over all
foreground tiles with a streaming softmax so only the current block is held in
memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_wsseg.io import open_slide, slide_levels
from napari_wsseg.methods.base import Maps
from napari_wsseg.methods.tiling import iter_tiles, make_grid, scatter

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.methods.distill.nets import DistillModel


class _StreamingPool:
    """Attention pooling z = sum_k softmax(e)_k h_k (eq. 1-2) over tiles seen in chunks."""

    def __init__(self) -> None:
        self.m = -float("inf")
        self.s = 0.0
        self.acc: torch.Tensor | None = None

    def add(self, e: torch.Tensor, h: torch.Tensor) -> None:
        m_new = max(self.m, float(e.max()))
        scale = float(np.exp(self.m - m_new)) if self.acc is not None else 0.0
        w = torch.exp(e - m_new)
        self.s = self.s * scale + float(w.sum())
        self.acc = (w @ h) if self.acc is None else self.acc * scale + w @ h
        self.m = m_new

    def pooled(self) -> torch.Tensor | None:
        return None if self.acc is None else self.acc / self.s


@torch.no_grad()
def predict_slide(model: DistillModel, image: ImageData, cfg: Any) -> Maps:
    """Tile maps and the slide probability for one slide (see module docstring)."""
    levels = slide_levels(image)
    grid = make_grid(levels, cfg.tile, cfg.level)
    model.eval()
    teacher, student = model.teacher, model.student
    device = next(model.parameters()).device
    rows, cols, probs, att_logits = [], [], [], []
    pool = _StreamingPool()
    for blk in iter_tiles(levels, cfg.tile, cfg.level, cfg.white, cfg.max_background):
        for i0 in range(0, len(blk.rows), cfg.predict_batch):
            sl = slice(i0, i0 + cfg.predict_batch)
            x = torch.from_numpy(np.ascontiguousarray(blk.tiles[sl])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            hs = student.features(x)
            probs.append(torch.sigmoid(student.instance_logits_from(hs)).cpu())
            pool.add(student.attention.scores(hs), hs)
            att_logits.append(teacher.attention.scores(teacher.features(x)).cpu())
            rows.append(blk.rows[sl])
            cols.append(blk.cols[sl])
    maps = Maps(mask="mask_prob", threshold=cfg.threshold)
    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
        a = torch.softmax(torch.cat(att_logits), dim=0).numpy()
        inst = scatter(grid, r, c, torch.cat(probs).numpy())
        att = scatter(grid, r, c, a / a.max())
        z = pool.pooled()
        bag = float(torch.sigmoid(student.classifier(z)).squeeze())
    else:  # an all-background slide: nothing to attend to, no tumour evidence
        inst = att = np.zeros(grid.shape, np.float32)
        bag = 0.0
    maps.maps = {"instance_prob": inst, "mask_prob": inst.copy(), "attention": att}
    maps.grids = {name: grid.grid() for name in maps.maps}
    fg = np.zeros(grid.shape, bool)
    if rows:
        fg[r, c] = True
    maps.valid = {name: fg for name in maps.maps}  # background tiles hold no prediction
    maps.probabilities = {cfg.label: bag}
    return maps


def validate_slides(method: Any, model: DistillModel, items: list) -> dict[str, float]:
    """Bag AUC/accuracy of the student and, where reference masks exist, tile AUROC/F1.

    Tile labels come from the reference mask (tumour covering >= half the tile);
    only foreground tiles count.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    from napari_wsseg.io import read_mask
    from napari_wsseg.methods.tiling import tile_labels

    cfg = method.config
    bag_y, bag_p, inst_y, inst_p = [], [], [], []
    for it in items:
        if it.modality != "slide" or cfg.label not in it.labels:
            continue
        image = open_slide(it.path)
        maps = predict_slide(model, image, cfg)
        bag_y.append(float(it.labels[cfg.label]))
        bag_p.append(maps.probabilities[cfg.label])
        if it.reference_mask:
            grid = make_grid(slide_levels(image), cfg.tile, cfg.level)
            lab = tile_labels(read_mask(it.reference_mask), grid)
            fg = maps.valid["instance_prob"]  # tiler foreground; attention may underflow to 0
            inst_y.append(lab[fg])
            inst_p.append(maps.maps["instance_prob"][fg])
    out: dict[str, float] = {}
    if bag_y:
        y, p = np.array(bag_y), np.array(bag_p)
        out["bag_accuracy"] = float(((p >= 0.5) == (y > 0.5)).mean())
        if len(set(y.tolist())) == 2:
            out["bag_auc"] = float(roc_auc_score(y, p))
    if inst_y:
        y, p = np.concatenate(inst_y), np.concatenate(inst_p)
        out["instance_accuracy"] = float(((p >= cfg.threshold) == (y > 0.5)).mean())
        out["instance_f1"] = float(f1_score(y > 0.5, p >= cfg.threshold, zero_division=0))
        if len(set(y.tolist())) == 2:
            out["instance_auroc"] = float(roc_auc_score(y, p))
    return out
