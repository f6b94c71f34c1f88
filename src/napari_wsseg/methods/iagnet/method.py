"""IAG-Net: partially supervised PDAC classification and segmentation in CT.

Wang et al., "Learning Inductive Attention Guidance for Partially Supervised
Pancreatic Ductal Adenocarcinoma Prediction", IEEE TMI 2021. One network per view
(a 2D U-Net plus heads) learns an attention map from the few annotated volumes
(eqs. 1-3), a global attention-MIL classifier from every volume's label (4-8) and a
local classifier from annotated voxels plus attention-split bags of the weak-only
positives (9-16); the total loss is (17)-(19). Inference fuses the three views
and applies (21) and (22). Equations: ``.losses``; network:
``.model``; data and chunked inference: ``.data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_wsseg.methods.base import Maps, Method, Stage, unwrap
from napari_wsseg.methods.iagnet.data import IAGNetDataset, infer_volume, load_case
from napari_wsseg.methods.iagnet.model import VIEWS, IAGNetModel

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


@dataclass
class IAGNetConfig:
    """Defaults from the paper (U-Net backbone, Sec. IV-C) unless noted.

    ``views``: the views the model holds, one U-Net each, trained together (each
    sample picks one at random); predict averages them. ``features``: BasicUNet
    widths, the last is C (64 in the paper). Ablations (Sec. IV-E): ``global_loss``
    False = local only, ``local_loss`` False = global only, ``constant_lambda`` =
    lambda 1, ``use_unannotated`` False = |D_u| = 0 (weak-only positives dropped).
    ``gate_mask``: zero ``mask_prob`` when P_g <= 0.5 (eq. 22 applies if y^ = 1).
    """

    views: tuple[str, ...] = VIEWS
    features: tuple[int, ...] = (64, 128, 256, 512, 1024, 64)
    hu_min: float = -125.0
    hu_max: float = 350.0
    interval_min: int = 1
    interval_max: int = 5
    max_slices: int = 0  # cap on slices per sample (0 = all at the drawn interval)
    beta: float = 20.0
    steps: int = 120_000
    lr: float = 1e-4
    batch_size: int = 1
    global_loss: bool = True
    local_loss: bool = True
    constant_lambda: bool = False
    use_unannotated: bool = True
    unannotated_warmup: int = 0  # steps before eq. (12) starts (not in the paper: 0)
    voxel_reduction: str = "sum"  # eqs. (3), (15) summed over voxels as written, or "mean"
    chunk_slices: int = 4
    label: str = "pdac"
    gate_mask: bool = True


def _views(value: Any) -> tuple[str, ...]:
    """``views`` from a tuple or a comma-separated string (CLI ``--set views=axial``)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return tuple(value)


class IAGNet(Method):
    """Inductive Attention Guidance Network on CT volumes (method ``iagnet``)."""

    name = "iagnet"
    modality = "ct"
    Config = IAGNetConfig

    @property
    def window(self) -> tuple[float, float]:
        return (float(self.config.hu_min), float(self.config.hu_max))

    def build_model(self) -> IAGNetModel:
        c = self.config
        return IAGNetModel(
            views=_views(c.views),
            features=tuple(int(f) for f in c.features),
            beta=c.beta,
            global_loss=c.global_loss,
            local_loss=c.local_loss,
            constant_lambda=c.constant_lambda,
            unannotated_warmup=c.unannotated_warmup,
            voxel_reduction=c.voxel_reduction,
        )

    def stages(self) -> list[Stage]:
        c = self.config
        return [Stage("iagnet", steps=c.steps, batch_size=c.batch_size, lr=c.lr)]

    def training_cases(
        self, items: list[SnapshotItem]
    ) -> list[tuple[str, str | None, float | None]]:
        """(image, mask, label) of the items Algorithm 1 trains on.

        Items of another modality, or with neither the label nor a mask, are left
        out; with ``use_unannotated`` False the weak-only positives are too (|D_u| = 0).
        """
        cases = []
        for it in items:
            if it.modality != "ct":
                continue
            label = it.labels.get(self.config.label)
            if label is None and it.mask is None:
                continue
            if not self.config.use_unannotated and it.mask is None and (label or 0) > 0.5:
                continue
            cases.append((it.path, it.mask, None if label is None else float(label)))
        if not cases:
            raise ValueError(
                f"IAG-Net: no CT item with a {self.config.label!r} label or a mask to train on"
            )
        return cases

    def dataset(
        self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module
    ) -> IAGNetDataset:
        c = self.config
        return IAGNetDataset(
            self.training_cases(items),
            views=unwrap(model).views,
            window=self.window,
            interval=(int(c.interval_min), int(c.interval_max)),
            max_slices=int(c.max_slices),
        )

    def collate(self, samples: list[Any]) -> list[Any]:
        """Volumes differ in size and view: a batch is the list of samples."""
        return list(samples)

    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        """Fused maps of one CT volume (Z, Y, X): attention p_x, local q_x, mask_prob.

        ``mask_prob`` = (p_x + q_x) / 2, so the default threshold 0.5 is eq. (22);
        ``probabilities['pdac']`` = P_g averaged over views, eq. (21) cuts it at 0.5.
        """
        data = image.data[0] if image.multiscale else image.data
        if image.rgb or len(data.shape) not in (2, 3):
            where = image.meta.get("path", "image")
            raise ValueError(f"{where}: IAG-Net needs a CT volume (Z, Y, X), got {data.shape}")
        if len(data.shape) == 2:
            data = np.asarray(data)[None]
        net = unwrap(model)
        net.eval()
        out = infer_volume(net, data, self.window, self.config.chunk_slices)
        p, q, pg = out["p"], out["q"], out["pg"]
        mask_prob = np.add(p, q)
        mask_prob *= 0.5  # in place: one more volume, not two
        if self.config.gate_mask and pg <= 0.5:
            mask_prob[...] = 0.0  # (21)-(22): segment only volumes classified PDAC
        if len(image.data.shape) == 2 and not image.multiscale:
            p, q, mask_prob = p[0], q[0], mask_prob[0]
        return Maps(
            maps={"attention": p, "local": q, "mask_prob": mask_prob},
            probabilities={self.config.label: pg},
            mask="mask_prob",
            threshold=0.5,
        )

    def validate(self, model: torch.nn.Module, items: list[SnapshotItem]) -> dict[str, float]:
        """Mean Dice (eq. 22 mask) on positives with a reference (or accepted) mask;
        sensitivity and specificity of eq. (21) on items with a label."""
        from napari_wsseg.io.base import ImageData
        from napari_wsseg.metrics import dice_hard, sensitivity_specificity

        dices, y_true, y_hat = [], [], []
        for it in items:
            vol, ref = load_case(it.path, it.reference_mask or it.mask)
            maps = self.predict(model, ImageData(vol, "ct", (1.0, 1.0, 1.0)))
            label = it.labels.get(self.config.label)
            if label is None and ref is not None:
                label = float(ref.any())
            if label is not None:
                y_true.append(float(label) > 0.5)
                y_hat.append(float(maps.probabilities[self.config.label] > 0.5))  # (21)
            if ref is not None and ref.any():
                dices.append(dice_hard(maps.maps["mask_prob"] > 0.5, ref > 0))  # (22)
        out: dict[str, float] = {}
        if dices:
            out["dice"] = float(np.mean(dices))
        if y_true:
            sens, spec = sensitivity_specificity(y_true, y_hat)
            out.update(
                {
                    k: v
                    for k, v in (("sensitivity", sens), ("specificity", spec))
                    if not np.isnan(v)
                }
            )
        return out


METHOD = IAGNet
