"""How long a prediction or a training run will take, before starting it.

``estimate_seconds(method, config, device)`` times a small probe of the method's
network on ``device`` (one slice of 96 x 96 px for IAG-Net at C = 64: ~0.6 s a forward
on this shared CPU core, run twice with the warm-up; callers may cache the result per
config and device) and scales it by the work of the real run. The per-pixel scaling
is approximate: on this CPU a 128 px probe came out 21 % under a timed run of 512 px
slices (small maps fit the caches better, so expect an underestimate). The Retrain
dock calls it to warn before a paper-size run starts on a CPU. Cost models:

- ``iagnet``: convolution cost is linear in pixels, so a probe of one slice of
  ``probe`` x ``probe`` pixels gives seconds per pixel; prediction is
  every slice of every view (each padded to a multiple of 16), training a step of
  one view (chosen at random: the mean over views) at the mean slice interval
  (``interval_min..max``, ``max_slices``), forward + backward (probed too).
- ``distill``: seconds per tile through both nets (probe of ``predict_batch``
  tiles); prediction is the tissue tiles of a slide (``tissue`` fraction, 0.3 by
  default), training is the steps times ``max_bag`` tiles forward + backward (the
  teacher's X_delta pass counted twice).

Other methods get ``seconds=None`` (no cost model) and no warning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

WARN_SECONDS = 30 * 60.0  # warn above half an hour on a CPU


@dataclass
class Estimate:
    """Seconds for the run (None: no cost model), what it assumed, and a warning."""

    seconds: float | None
    basis: str
    warning: str | None = None


def _time(fn: Any, repeats: int = 1) -> float:
    fn()  # warm-up (allocations, oneDNN primitives)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _iagnet(cfg: Any, device: torch.device, kind: str, shape: tuple[int, ...],
            probe: int) -> tuple[float, str]:  # fmt: skip
    from napari_wsseg.methods.iagnet.data import channels_last
    from napari_wsseg.methods.iagnet.model import IAGNetModel

    views = tuple(cfg.views.split(",")) if isinstance(cfg.views, str) else tuple(cfg.views)
    net = IAGNetModel(views=views[:1], features=tuple(int(f) for f in cfg.features)).to(device)
    s = 1
    x = torch.zeros((s, 1, probe, probe), device=device)
    cuda = device.type == "cuda"

    def fwd() -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            net.feature_map(views[0], x.contiguous(memory_format=torch.channels_last))
        if cuda:
            torch.cuda.synchronize()

    def fwd_bwd() -> None:
        net.feature_map(views[0], x).float().square().mean().backward()
        if cuda:
            torch.cuda.synchronize()

    if kind == "predict":
        with channels_last(net.backbones[views[0]]):
            per_px = _time(fwd) / (s * probe * probe)
    else:
        per_px = _time(fwd_bwd) / (s * probe * probe)

    work = iagnet_pixels(cfg, kind, shape)
    if kind == "predict":
        return work * per_px, (
            f"{len(views)} view(s) of a {'x'.join(map(str, shape))} volume, "
            f"{work / 1e6:.0f} Mpx at {per_px * 1e9:.0f} ns/px (probe {probe}x{probe} px, "
            f"C={cfg.features[-1]})"
        )
    step = work / int(cfg.steps) * per_px
    return work * per_px, (
        f"{int(cfg.steps)} steps x {step:.2f} s (one view of {'x'.join(map(str, shape))}, "
        f"forward+backward at {per_px * 1e9:.0f} ns/px, C={cfg.features[-1]})"
    )


def iagnet_pixels(cfg: Any, kind: str, shape: tuple[int, ...]) -> float:
    """Pixels through one U-Net: every slice of every view (predict), or the steps times
    the mean over views of (slices at the mean interval, capped by ``max_slices``) x
    slice pixels (train); slices are padded to a multiple of 16 as the net pads them."""
    from napari_wsseg.methods.iagnet.model import VIEW_AXIS

    views = tuple(cfg.views.split(",")) if isinstance(cfg.views, str) else tuple(cfg.views)

    def slice_px(axis: int) -> int:
        other = [-(-n // 16) * 16 for i, n in enumerate(shape) if i != axis]
        return other[0] * other[1]

    if kind == "predict":
        return float(sum(shape[VIEW_AXIS[v]] * slice_px(VIEW_AXIS[v]) for v in views))
    r = (int(cfg.interval_min) + int(cfg.interval_max)) / 2
    per_view = []
    for v in views:
        k = shape[VIEW_AXIS[v]] / r
        if cfg.max_slices:
            k = min(k, float(cfg.max_slices))
        per_view.append(k * slice_px(VIEW_AXIS[v]))
    return float(int(cfg.steps) * np.mean(per_view))


def _distill(cfg: Any, device: torch.device, kind: str, shape: tuple[int, ...],
             tissue: float) -> tuple[float, str]:  # fmt: skip
    from napari_wsseg.methods.distill.nets import DistillModel

    model = DistillModel(cfg).to(device)
    b = max(1, min(int(cfg.predict_batch), 512))
    x = torch.rand((b, int(cfg.in_channels), cfg.tile, cfg.tile), device=device)

    def fwd() -> None:
        with torch.inference_mode():
            model.student.features(x)
            model.teacher.features(x)

    def fwd_bwd() -> None:
        model.student.features(x).sum().backward()

    if kind == "predict":
        per_tile = _time(fwd) / b
        tiles = shape[0] // cfg.tile * (shape[1] // cfg.tile) * tissue
        return tiles * per_tile, (
            f"{tiles:.0f} tissue tiles ({tissue:.0%} of a {shape[0]}x{shape[1]} slide) at "
            f"{1 / per_tile:.0f} tiles/s"
        )
    per_tile = _time(fwd_bwd) / b
    steps = int(cfg.teacher_steps) * 2 + int(cfg.student_steps) * 2  # X_delta; two nets
    per_step = per_tile * int(cfg.max_bag) * int(cfg.batch_size)
    return steps * per_step, (
        f"{cfg.teacher_steps}+{cfg.student_steps} steps, {cfg.max_bag} tiles a bag, "
        f"{1 / per_tile:.0f} tiles/s forward+backward"
    )


def estimate_seconds(
    method: Any,
    config: Any = None,
    device: str | torch.device = "cpu",
    kind: str = "train",
    shape: tuple[int, ...] | None = None,
    probe: int = 96,
    tissue: float = 0.3,
) -> Estimate:
    """Estimated seconds of a ``kind`` ('train' or 'predict') run of ``method``.

    ``method``: a name or a Method instance; ``config``: its Config, a dict of
    overrides, or None (the method's defaults, or the instance's config). ``shape``:
    the input (CT (Z, Y, X), default 100 x 512 x 512; slide (Y, X), default 100k
    square). The warning is set when the run would take over 30 minutes on a CPU.
    """
    from napari_wsseg.methods import get_method

    if kind not in ("train", "predict"):
        raise ValueError(f"kind must be 'train' or 'predict', got {kind!r}")
    inst = get_method(method)() if isinstance(method, str) else method
    cfg = inst.config
    if isinstance(config, dict):
        import dataclasses

        cfg = dataclasses.replace(cfg, **config)
    elif config is not None:
        cfg = config
    dev = torch.device(device)
    name = inst.name
    with torch.random.fork_rng(devices=[]):  # the probe must not move the caller's RNG
        if name == "iagnet":
            secs, basis = _iagnet(cfg, dev, kind, tuple(shape or (100, 512, 512)), probe)
        elif name == "distill":
            secs, basis = _distill(cfg, dev, kind, tuple(shape or (100_000, 100_000)), tissue)
        else:
            return Estimate(None, f"no cost model for method {name!r}")
    warning = None
    if dev.type == "cpu" and secs > WARN_SECONDS:
        warning = (
            f"{name} {kind} would take about {secs / 3600:.1f} h on this CPU ({basis}); "
            "use a GPU or a smaller configuration"
        )
    return Estimate(secs, basis, warning)
