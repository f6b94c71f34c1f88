"""Run-time estimates before a run (the Retrain dock's warning) and CT progress reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsseg.methods.iagnet.data import infer_volume
from napari_wsseg.methods.iagnet.method import IAGNet, IAGNetConfig
from napari_wsseg.methods.progress import reporting
from napari_wsseg.training import estimate as est
from napari_wsseg.training.estimate import estimate_seconds, iagnet_pixels

torch.set_num_threads(1)
TINY = {"features": (4, 4, 8, 8, 8, 4)}


def test_iagnet_work_is_every_padded_slice_of_every_view():
    cfg = IAGNetConfig()  # paper size: C = 64, three views
    # axial 100 slices of 512x512; coronal / sagittal 512 slices of 112 (100 padded) x 512
    assert iagnet_pixels(cfg, "predict", (100, 512, 512)) == 100 * 512 * 512 + 2 * 512 * 112 * 512
    # training: one view a step at the mean interval (1+5)/2 = 3
    per_view = [100 / 3 * 512 * 512, 512 / 3 * 112 * 512, 512 / 3 * 112 * 512]
    want = cfg.steps * np.mean(per_view)
    assert iagnet_pixels(cfg, "train", (100, 512, 512)) == pytest.approx(want)
    capped = IAGNetConfig(max_slices=8, views=("axial",))
    assert iagnet_pixels(capped, "train", (100, 512, 512)) == capped.steps * 8 * 512 * 512


def test_estimate_probes_the_net_and_warns_for_long_cpu_runs(monkeypatch):
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    e = estimate_seconds("iagnet", {**TINY, "steps": 10}, "cpu", kind="train", shape=(8, 32, 32),
                         probe=32)  # fmt: skip
    assert torch.rand(1) == before  # the probe leaves the caller's RNG alone
    assert e.seconds > 0 and "10 steps" in e.basis and e.warning is None
    monkeypatch.setattr(est, "WARN_SECONDS", 0.0)
    p = estimate_seconds(IAGNet(IAGNetConfig(**TINY)), None, "cpu", kind="predict",
                         shape=(8, 32, 32), probe=32)  # fmt: skip
    assert p.seconds > 0 and "3 view(s)" in p.basis
    assert p.warning and "on this CPU" in p.warning
    d = estimate_seconds("distill", {"channels": (4,), "predict_batch": 16}, kind="predict",
                         shape=(1024, 1024))  # fmt: skip
    assert d.seconds > 0 and "307 tissue tiles" in d.basis  # 32x32 tiles x 0.3
    assert estimate_seconds("glam").seconds is None
    with pytest.raises(ValueError, match="kind"):
        estimate_seconds("iagnet", kind="infer")


def test_ct_inference_reports_slices_done_per_view():
    m = IAGNet(IAGNetConfig(**TINY, views=("axial", "coronal")))
    net = m.build_model().eval()
    seen = []
    with reporting(lambda p, _: seen.append((p.done, p.total, p.unit)), min_interval=0.0):
        infer_volume(net, np.zeros((5, 16, 24), np.float32), m.window, chunk_slices=2)
    assert seen[-1] == (5 + 16, 5 + 16, "slices")
    assert [d for d, _, _ in seen] == [2, 4, 5, 7, 9, 11, 13, 15, 17, 19, 21]
