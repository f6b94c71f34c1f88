"""Default display windows (contrast limits) per modality."""

from __future__ import annotations

import numpy as np

# IAG-Net clips abdominal CT to [-125, 350] HU before normalising; the viewer uses the
# same window so what the user sees is what the model sees.
CT_WINDOW: tuple[float, float] = (-125.0, 350.0)


def robust_window(
    array: np.ndarray, low: float = 0.5, high: float = 99.5, max_samples: int = 1_000_000
) -> tuple[float, float]:
    """Percentile window over a strided subsample (cheap on 16-bit mammograms)."""
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step].astype(np.float64)
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def default_window(
    modality: str, array: np.ndarray, rgb: bool = False
) -> tuple[float, float] | None:
    """Contrast limits for ``array``: the CT HU window, None for RGB, else percentiles."""
    if rgb:
        return None
    if modality == "ct":
        return CT_WINDOW
    return robust_window(array)
