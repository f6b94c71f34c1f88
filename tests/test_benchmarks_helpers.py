"""Helpers of the method benchmarks (issue 15): the shared ``--device`` flag, the
rare-tumour label-noise formula and the validation-picked training of the Distill
slide regime (``_distill_slides``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _device import add_device_arg, device_of, to  # noqa: E402


def test_device_flag_defaults_to_cpu_and_rejects_others() -> None:
    ap = argparse.ArgumentParser()
    add_device_arg(ap)
    assert ap.parse_args([]).device == "cpu"
    assert ap.parse_args(["--device", "cuda"]).device == "cuda"
    with pytest.raises(SystemExit):
        ap.parse_args(["--device", "tpu"])


def test_cuda_without_gpu_is_a_clear_exit(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_of("cpu") == torch.device("cpu")
    with pytest.raises(SystemExit, match="--device cuda: .*no CUDA GPU"):
        device_of("cuda")


def test_to_moves_nested_batches_and_keeps_other_values() -> None:
    batch = {"x": torch.zeros(2, 1, 4, 4), "meta": ["a", (torch.ones(1), 3)], "n": 5}
    out = to(batch, "cpu")
    assert out["x"].device.type == "cpu" and out["x"].shape == (2, 1, 4, 4)
    assert out["meta"][0] == "a" and isinstance(out["meta"][1], tuple)
    assert float(out["meta"][1][0]) == 1.0 and out["meta"][1][1] == 3 and out["n"] == 5


def test_p_miss_matches_the_hypergeometric_hand_value() -> None:
    from _distill_slides import p_miss

    lab = np.zeros(10)
    lab[3] = 1
    # a 5-tile sub-bag of 10 tiles misses the single tumour tile: C(9, 5) / C(10, 5) = 1/2
    assert p_miss(lab, 5) == pytest.approx(0.5)
    lab[7] = 1  # two tumour tiles: C(8, 5) / C(10, 5) = 56 / 252
    assert p_miss(lab, 5) == pytest.approx(56 / 252)
    assert p_miss(lab, 10) == 0.0  # the whole bag is drawn


def test_wall_time_reads_totals_then_per_row_times() -> None:
    from _summary import wall_time

    assert wall_time("... Total 830 s, 1 thread.") == "830 s (14 min)"
    assert wall_time("x. Whole script: 241 s.") == "241 s (4 min)"
    per_seed = (
        "5 seeds.\n\n| method | time (s) per seed |\n|---|---|\n| a | 600 |\n| b \\| c | 300 |\n"
    )
    assert wall_time(per_seed).startswith("~4500 s (75 min")  # (600 + 300) x 5 seeds
    rows = "| run | train s |\n|---|---|\n| (b) \\|D_u\\| = 0 | 46 |\n| (a) | 114 |\n"
    assert wall_time(rows) == ">= 160 s (training only: the train s column)"
    timed = "| threads | seconds |\n|---|---|\n| 1 | 20.5 |\n| 2 | 9.5 |\n"
    assert wall_time(timed) == ">= 30 s (the timed runs of its table)"
    assert wall_time("| threads | tiles/s |\n|---|---|\n| 1 | 2087 |\n").startswith("no total")


def test_val_loss_is_the_mean_bag_bce(monkeypatch) -> None:
    import _distill_slides

    monkeypatch.setattr(_distill_slides, "probs", lambda net, x: (x, None))
    val = [(0.8, 1.0), (0.3, 0.0), (0.6, 1.0)]
    hand = -(np.log(0.8) + np.log(0.7) + np.log(0.6)) / 3
    assert _distill_slides.val_loss(None, val) == pytest.approx(hand)


def test_train_selected_keeps_the_best_step_and_stops_after_patience(monkeypatch) -> None:
    import copy

    import _distill_slides

    from napari_wsseg.methods.distill.method import DistillConfig
    from napari_wsseg.methods.distill.nets import DistillModel

    cfg = DistillConfig(vat=False, in_channels=1, channels=(4,), hidden=8, feat_dim=4,
                        attn_dim=4)  # fmt: skip
    model = DistillModel(cfg)
    script = iter([0.6, 0.5, 0.7, 0.4, 0.45, 0.5, 0.55, 0.1, 0.1])
    seen = []  # the teacher's state at every validation call

    def fake_val(net, val):
        seen.append(copy.deepcopy(net.state_dict()))
        return next(script)

    monkeypatch.setattr(_distill_slides, "val_loss", fake_val)
    gen = torch.Generator().manual_seed(0)
    bags = [torch.rand(1, 5, 1, 8, 8, generator=gen) for _ in range(2)]

    def batch(step: int) -> dict:
        return {"tiles": bags[step % 2], "label": torch.tensor([float(step % 2)])}

    sel = {"every": 1, "patience": 3, "min_steps": 3}
    log = _distill_slides.train_selected(model, batch, "teacher", 9, 1e-2, 0, [], sel, "cpu")
    # best loss 0.4 at step 4; steps 5-7 bring nothing better, so it stops at step 7
    assert log == {"picked": 4, "ran": 7, "val": [0.6, 0.5, 0.7, 0.4, 0.45, 0.5, 0.55]}
    assert len(seen) == 7
    final = model.teacher.state_dict()
    for k, v in seen[3].items():
        assert torch.equal(final[k], v), k  # the step-4 weights are loaded back
    assert any(not torch.equal(seen[6][k], v) for k, v in seen[3].items())  # training moved on
