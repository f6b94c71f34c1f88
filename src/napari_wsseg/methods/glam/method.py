"""GLAM: global-local activation maps for high-resolution mammograms (Liu et al., 2022).

A coarse global module picks a few patches (Algorithm 1), a stride-1 local module
segments them at 1/4 of the working resolution, and S_c = gamma_c S_g +
(1 - gamma_c) S_l (App. G.9; 0.5 = the paper's average). ``cam=True`` turns the same
backbone into the CAM baseline of Table 1. See docs/methods/glam.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_wsseg.methods.base import Grid, Maps, Method, Stage
from napari_wsseg.methods.glam.data import MammoDataset, to_model_input
from napari_wsseg.methods.glam.model import GLAMModel

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


@dataclass
class GLAMConfig:
    """GLAM hyper-parameters; defaults from the paper unless noted.

    ``image_size``: the working resolution the image is resized to (paper: the full
    2944x1920; train at 736x480 on CPU). ``patch_size``: patch side in working pixels
    (paper 512 at full resolution). ``global_top_t`` / ``local_top_t``: t of top t%
    pooling in percent (global: the paper searched {1,2,3,5,10,20}; local: 20,
    App. C). ``l1_weight``: lambda of eq. 1 (searched in 10^[-5.5,-3.5]).
    ``scale_weights``: gamma_0..2 (0.2, 0.6, 0.2). ``k_train`` / ``m_infer``: patches
    in training (6) and inference (1). ``gamma_c``: weight of S_g in S_c (App. G.9).
    Widths/blocks: reduced channels (GMIC-like global net; ResNet-34 layout with
    fewer channels locally, for CPU). ``cam``: the CAM baseline instead of GLAM.
    """

    image_size: tuple[int, int] = (2944, 1920)
    patch_size: int = 512
    classes: tuple[str, ...] = ("malignant", "benign")
    global_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    global_blocks: tuple[int, ...] = (1, 1, 1, 1, 1)
    local_widths: tuple[int, ...] = (16, 32, 48, 64)
    local_blocks: tuple[int, ...] = (3, 4, 6, 3)
    attention_hidden: int = 64
    global_top_t: float = 3.0
    local_top_t: float = 20.0
    l1_weight: float = 1e-4
    scale_weights: tuple[float, float, float] = (0.2, 0.6, 0.2)
    k_train: int = 6
    m_infer: int = 1
    gamma_c: float = 0.5
    upsample: str = "bilinear"
    threshold: float = 0.5
    cam: bool = False
    global_steps: int = 2000
    local_steps: int = 1000
    joint_steps: int = 200
    # ours, not the paper's: stage ``masks`` (joint losses + BCE/Dice on expert or
    # corrected masks, model.py); 0 steps unless a fine-tune or --steps asks for it
    mask_steps: int = 0
    mask_weight: float = 1.0
    batch_size: int = 4
    lr: float = 1e-4
    joint_lr: float = 3e-5
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.image_size = tuple(int(s) for s in self.image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 64:
            raise ValueError(f"image_size must be (H, W) >= 64, got {self.image_size}")
        if self.patch_size % 4 or not 4 <= self.patch_size <= min(self.image_size):
            raise ValueError(
                f"patch_size must be a multiple of 4 within the image, got {self.patch_size}"
            )
        if abs(sum(self.scale_weights) - 1.0) > 1e-6 or min(self.scale_weights) < 0:
            raise ValueError(f"scale_weights must be >= 0 and sum to 1, got {self.scale_weights}")
        if not 0.0 <= self.gamma_c <= 1.0:
            raise ValueError(f"gamma_c must be in [0, 1], got {self.gamma_c}")
        if self.k_train < 1 or self.m_infer < 1:
            raise ValueError("k_train and m_infer must be >= 1")
        if self.upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {self.upsample!r}")
        self.classes = tuple(self.classes)


class GLAMMethod(Method):
    """GLAM behind the method protocol (stages ``global``, ``local``, ``joint``)."""

    name = "glam"
    modality = "mammo"
    Config = GLAMConfig

    def build_model(self) -> torch.nn.Module:
        return GLAMModel(self.config)

    def stages(self) -> list[Stage]:
        c = self.config
        wd = c.weight_decay
        out = [Stage("global", c.global_steps, c.batch_size, c.lr, wd)]
        if not c.cam:
            out += [
                Stage("local", c.local_steps, c.batch_size, c.lr, wd),
                Stage("joint", c.joint_steps, c.batch_size, c.joint_lr, wd),
                Stage("masks", c.mask_steps, c.batch_size, c.joint_lr, wd),
            ]
        return out

    def dataset(self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module):
        """Images at the working size with labels; patches are chosen in ``forward``
        (by the global module, frozen in stage ``local``; random on negatives)."""
        small = self.config.image_size[0] * self.config.image_size[1] <= 2_000_000
        return MammoDataset(items, self.config.image_size, self.config.classes, cache=small)

    def trainable(self, model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
        """Global stage: f_g; local stage: f_l (f_g frozen); joint, masks: everything."""
        from napari_wsseg.methods.base import unwrap

        m = unwrap(model)
        if stage.name == "global":
            return list(m.global_net.parameters())
        if stage.name == "local":
            return list(m.local_net.parameters())
        return [p for p in m.parameters() if p.requires_grad]

    # --- inference -------------------------------------------------------------
    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        """GLAM maps for one mammogram (any size: resized to ``image_size``).

        ``glam_global``: S_g (2, h0, w0) on a Grid (1/16 of the working size);
        ``glam_local`` / ``glam_combined``: S_l / S_c (2, H/4, W/4) of the working
        size (S_l is zero outside the M patches); ``mask_prob``: S_c bilinearly
        upsampled to the input's full resolution (2, H, W); boxes: the M patches in
        input pixels; probabilities: y_g (the global module's, as the paper).
        CAM (``cam=True``): ``cam`` (2, h2, w2) and ``mask_prob`` from it.
        """
        from napari_wsseg.methods.base import unwrap

        m = unwrap(model)
        data = image.data[0] if image.multiscale else image.data
        arr = np.asarray(data)
        if arr.ndim == 3 and not image.rgb:
            if arr.shape[0] != 1:
                raise ValueError(f"GLAM needs a 2D mammogram, got shape {arr.shape}")
            arr = arr[0]
        full_hw = arr.shape[:2]
        x = to_model_input(arr, self.config.image_size, image.meta)[None]
        del arr
        param = next(m.parameters())
        was = m.training
        m.eval()
        try:
            with torch.inference_mode():
                out = m.infer(x.to(param.device, param.dtype))
        finally:
            m.train(was)
        return self._to_maps(out, full_hw)

    def _grid(self, map_hw: tuple[int, int], full_hw: tuple[int, int]) -> Grid:
        return Grid.downsampled(tuple(f / m for f, m in zip(full_hw, map_hw)))

    def _to_maps(self, out: dict[str, Any], full_hw: tuple[int, int]) -> Maps:
        c = self.config
        classes = list(c.classes)
        s_g = out["s_g"][0].float()
        probs = {name: float(v) for name, v in zip(classes, out["y_g"][0].tolist())}
        key_g = "cam" if c.cam else "glam_global"
        maps = Maps(classes={}, probabilities=probs, threshold=c.threshold, mask="mask_prob")
        maps.maps[key_g] = s_g.cpu().numpy()
        maps.grids[key_g] = self._grid(tuple(s_g.shape[-2:]), full_hw)
        best = s_g
        if not c.cam:
            s_l, s_c = out["s_l"][0].float(), out["s_c"][0].float()
            grid = self._grid(tuple(s_l.shape[-2:]), full_hw)
            for key, arr in (("glam_local", s_l), ("glam_combined", s_c)):
                maps.maps[key] = arr.cpu().numpy()
                maps.grids[key] = grid
            best = s_c
            wy, wx = (f / w for f, w in zip(full_hw, c.image_size))
            p = c.patch_size
            pos = out["pos"][0].cpu().numpy().astype(float)
            maps.boxes = np.stack(
                [pos[:, 0] * wy, pos[:, 1] * wx, (pos[:, 0] + p) * wy, (pos[:, 1] + p) * wx], 1
            )
            maps.box_labels = [f"patch {i + 1}" for i in range(len(pos))]
        mode = "bilinear" if c.upsample == "bilinear" else "nearest"
        kw = {"align_corners": False} if mode == "bilinear" else {}
        full = F.interpolate(best[None], size=tuple(full_hw), mode=mode, **kw)[0]
        maps.maps["mask_prob"] = full.clamp_(0, 1).cpu().numpy()
        for key in maps.maps:
            maps.classes[key] = classes
        return maps


METHOD = GLAMMethod
