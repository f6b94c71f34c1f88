"""Attention collapse: a class coded by (near) zero attention.

With the margin loss alone nothing stops the network from coding one class by a
near-zero attention map (the pooled feature of eq. 1 is then ~0 and the embedding
is the bias of the last layer, a point of its own on the sphere). The class is
still told apart, so the metric loss is happy, but its attention maps, and so its
proxy masks, are empty. :class:`CollapseMonitor` follows the mean attention of
each class over the metric stages' batches and says when one falls near zero, so
the user reads it in the progress log instead of finding empty masks at the end.
The opposite failure, attention saturated near 1 everywhere (whole-image proxy
masks, seen on one seed of five in the paper-regime benchmark), is reported too.
"""

from __future__ import annotations

import math

import torch


def class_attention_means(att: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean attention (B, 1, m, n) of each class present in the batch, NaN for absent
    classes: a (C,) tensor, detached."""
    per_image = att.detach().float().mean(dim=tuple(range(1, att.dim())))
    out = torch.full((n_classes,), math.nan, device=att.device)
    for c in torch.unique(labels).tolist():
        if 0 <= c < n_classes:
            out[c] = per_image[labels == c].mean()
    return out


class CollapseMonitor:
    """Exponential moving average of each class's attention mean; one warning per stage
    and class when the average stays below ``threshold`` after ``min_steps`` steps.

    The average smooths single batches (every class gets ~8 images a batch); the
    warm-up keeps the first steps, where attention starts near 0.5 and moves fast,
    from raising false alarms.
    """

    def __init__(self, threshold: float = 0.02, momentum: float = 0.9, min_steps: int = 10):
        self.threshold, self.momentum, self.min_steps = threshold, momentum, min_steps
        self.ema: dict[tuple[str, int], float] = {}
        self.steps: dict[str, int] = {}
        self.warned: set[tuple[str, int]] = set()

    def update(self, stage: str, means: torch.Tensor, names: tuple[str, ...]) -> list[str]:
        """Feed one batch's per-class means; the new warnings (usually none)."""
        self.steps[stage] = self.steps.get(stage, 0) + 1
        out = []
        for c, v in enumerate(means.detach().float().cpu().tolist()):
            if math.isnan(v):
                continue
            key = (stage, c)
            prev = self.ema.get(key)
            ema = v if prev is None else self.momentum * prev + (1 - self.momentum) * v
            self.ema[key] = ema
            name = names[c] if c < len(names) else f"class {c}"
            late = self.steps[stage] >= self.min_steps
            if late and ema > 1.0 - self.threshold and (stage, -1 - c) not in self.warned:
                # the opposite failure (seen in the paper-regime benchmark): attention ~1
                # everywhere, so the proxy mask is the whole image
                self.warned.add((stage, -1 - c))
                out.append(
                    f"manifold: attention saturated in stage {stage!r}: class {name!r} has "
                    f"mean attention {ema:.4f} (> {1 - self.threshold:g}), so its proxy "
                    "masks will cover the whole image. Retrain with another seed."
                )
            if late and ema < self.threshold:
                if key not in self.warned:
                    self.warned.add(key)
                    out.append(
                        f"manifold: attention collapse in stage {stage!r}: class {name!r} has "
                        f"mean attention {ema:.4f} (< {self.threshold:g}), so its images are "
                        "coded by an empty attention map and their proxy masks will be empty "
                        "(no threshold or min-max rescaling rescues them). Retrain with "
                        "another seed (the sigmoid saturates: it does not recover)."
                    )
        return out
