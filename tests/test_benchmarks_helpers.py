"""Helpers of the method benchmarks (issue 15): the shared ``--device`` flag and the
rare-tumour label-noise formula of ``bench_distill_regime``."""

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
    from bench_distill_regime import p_miss

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
