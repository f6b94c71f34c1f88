"""The method protocol: data in, maps out.

A method never touches napari layers or the study. The training engine turns a
study snapshot into batches through :meth:`Method.dataset` and drives
:meth:`Method.training_step`; the widgets show whatever :meth:`Method.predict`
returns, by name.

Training contract (so the engine can wrap the model in DistributedDataParallel):
the ``nn.Module`` from :meth:`Method.build_model` computes the training losses in
its ``forward(batch, stage=...)`` and returns a dict of scalar tensors with a
``"loss"`` entry (the total to minimise). Any part of a model can be reached for
prediction through :func:`unwrap`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from napari_wsseg.io.base import ImageData
    from napari_wsseg.study.snapshot import SnapshotItem


@dataclass
class Grid:
    """Where a map's pixels sit on the image's pixel grid.

    ``scale`` is the size of one map pixel in image pixels per spatial axis,
    ``translate`` the position of the map's first pixel centre minus the image's,
    in image pixels. Identity for maps at the image's resolution.
    """

    scale: tuple[float, ...]
    translate: tuple[float, ...]

    @classmethod
    def identity(cls, ndim: int) -> Grid:
        return cls((1.0,) * ndim, (0.0,) * ndim)

    @classmethod
    def downsampled(cls, factor: tuple[float, ...]) -> Grid:
        """A map whose pixel i covers image pixels [i*f, (i+1)*f): centres shift by (f-1)/2."""
        return cls(tuple(float(f) for f in factor), tuple((f - 1) / 2.0 for f in factor))


@dataclass
class Maps:
    """What :meth:`Method.predict` returns.

    ``maps``: name -> float array in [0, 1] (``attention``, ``gradcam``,
    ``glam_global``, ``instance_prob``, ``mask_prob`` ...). A map whose first axis is
    a class axis lists the class names in ``classes[name]``. ``grids[name]`` places a
    map that is not at the image's resolution (slides, GLAM's coarse map).
    ``probabilities``: case-level probability per label name. ``boxes``: (N, 4)
    rows (y0, x0, y1, x1) in image pixels with ``box_labels``. ``mask``: the name
    of the map that is the predicted mask probability (for the Labels layer), and
    ``threshold`` the method's default cut on it. ``valid``: name -> boolean array of
    the map's spatial shape, True where the map holds a prediction (a map absent from
    it is valid everywhere); slides mark the background tiles the tiler dropped, so
    evaluation does not count them as correct negatives.
    """

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    grids: dict[str, Grid] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    boxes: np.ndarray | None = None
    box_labels: list[str] = field(default_factory=list)
    mask: str | None = None
    threshold: float = 0.5
    valid: dict[str, np.ndarray] = field(default_factory=dict)

    def grid(self, name: str, ndim: int) -> Grid:
        return self.grids.get(name, Grid.identity(ndim))


@dataclass
class Stage:
    """One phase of training (GLAM's three, teacher then student, ...).

    ``steps`` is the number of optimiser steps, ``batch_size`` the batch per process.
    """

    name: str
    steps: int
    batch_size: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0


def config_fields(config_cls: type) -> dict[str, Any]:
    """Config keys and their defaults (for ``wsseg methods`` and the dock)."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under a DistributedDataParallel (or any ``.module``) wrapper."""
    return getattr(model, "module", model)


class Method(ABC):
    """Base class of the five seed methods. Subclasses set the class attributes.

    ``Config`` is a dataclass whose defaults come from the paper; every key can be
    overridden from the CLI (``--set key=value``) and the dock.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        self.config = dataclasses.replace(base, **overrides) if overrides else base

    # --- training -----------------------------------------------------------
    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """A fresh model from random weights (nothing downloads)."""

    @abstractmethod
    def stages(self) -> list[Stage]:
        """The training phases in order, from the config."""

    @abstractmethod
    def dataset(
        self, items: list[SnapshotItem], stage: Stage, model: torch.nn.Module
    ) -> torch.utils.data.Dataset:
        """The training samples of a stage. ``model`` is the unwrapped model at the
        stage's start, for stages that derive targets from an earlier one (pseudo
        labels): such targets may only depend on parts frozen in this stage."""

    def sampler(
        self, dataset: torch.utils.data.Dataset, stage: Stage, generator: torch.Generator
    ) -> torch.utils.data.Sampler | None:
        """A custom sampler (CheXseg's p-mixing, class-balanced batches); None = shuffle."""
        return None

    def collate(self, samples: list[Any]) -> Any:
        """Merge samples into a batch; default is torch's default_collate."""
        from torch.utils.data import default_collate

        return default_collate(samples)

    def trainable(self, model: torch.nn.Module, stage: Stage) -> list[torch.nn.Parameter]:
        """Parameters the optimiser updates in a stage (default: all)."""
        return [p for p in model.parameters() if p.requires_grad]

    def training_step(
        self, model: torch.nn.Module, batch: Any, stage: Stage
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch; the total is ``"loss"``. Goes through ``model(...)``
        so DistributedDataParallel syncs gradients."""
        return model(batch, stage=stage.name)

    def warnings(self, stage: Stage, losses: dict[str, torch.Tensor]) -> list[str]:
        """Messages for the progress log after a step (a failure mode seen in the
        losses, e.g. manifold's attention collapse); default none."""
        return []

    # --- inference ----------------------------------------------------------
    @abstractmethod
    def predict(self, model: torch.nn.Module, image: ImageData) -> Maps:
        """Maps and case-level probabilities for one image (model in eval mode)."""

    def validate(self, model: torch.nn.Module, items: list[SnapshotItem]) -> dict[str, float]:
        """Validation metrics on held-out items (labels and, where present, masks)."""
        return {}
