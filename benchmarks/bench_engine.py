"""Engine overhead: samples/s of ``training.runner.train`` vs a plain torch loop.

Same model (MONAI 2D UNet with a max-pooled image-level BCE and a soft Dice loss),
same in-memory synthetic images, same batch size, steps and optimiser (AdamW),
measured side by side in one run, alternating, several repeats. Steady-state rate:
time from the first to the last step (the first step's one-off costs excluded on
both sides). The engine runs with its defaults: a progress line every step, a
checkpoint every 50 steps. Goal: engine / plain >= 0.9.

    .venv/bin/python benchmarks/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

from napari_wsseg.methods.base import Maps, Method, Stage  # noqa: E402
from napari_wsseg.study.snapshot import Snapshot, SnapshotItem  # noqa: E402


@dataclass
class BenchConfig:
    size: int = 64
    batch_size: int = 8
    steps: int = 100
    channels: tuple[int, int, int] = (16, 32, 64)


class UNetLoss(nn.Module):
    def __init__(self, channels):
        super().__init__()
        from monai.networks.nets import UNet

        self.net = UNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=1,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=1,
        )

    def forward(self, batch, stage="train"):
        logits = self.net(batch["image"])[:, 0]
        bce = nn.functional.binary_cross_entropy_with_logits(
            logits.flatten(1).amax(1), batch["label"]
        )
        p = torch.sigmoid(logits).flatten(1)
        g = batch["mask"].flatten(1)
        dice = 1 - ((2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)).mean()
        return {"loss": bce + dice, "bce": bce, "dice": dice}


def make_samples(n: int, size: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.normal(0, 0.3, (size, size)).astype(np.float32)
        mask = np.zeros((size, size), np.float32)
        if i % 2:
            y, x = rng.integers(4, size - 12, 2)
            mask[y : y + 8, x : x + 8] = 1
            img += 2 * mask
        out.append(
            {
                "image": torch.from_numpy(img)[None],
                "mask": torch.from_numpy(mask),
                "label": torch.tensor(float(i % 2)),
            }
        )
    return out


SAMPLES: list[dict] = []


class BenchDataset(torch.utils.data.Dataset):
    def __len__(self):
        return len(SAMPLES)

    def __getitem__(self, i):
        return SAMPLES[i]


class BenchMethod(Method):
    name = "bench"
    modality = "skin"
    Config = BenchConfig

    def build_model(self):
        return UNetLoss(self.config.channels)

    def stages(self):
        return [Stage("train", self.config.steps, self.config.batch_size, 1e-3)]

    def dataset(self, items, stage, model):
        return BenchDataset()

    def predict(self, model, image):
        return Maps()


METHOD = BenchMethod


def run_engine(cfg: BenchConfig, root: Path, rep: int) -> tuple[float, float]:
    from napari_wsseg.training.progress import read_progress
    from napari_wsseg.training.runner import train
    from napari_wsseg.training.spec import JobSpec

    snap = root / "snapshot.json"
    if not snap.exists():
        items = [SnapshotItem(i, f"mem://{i}", "skin") for i in range(len(SAMPLES))]
        Snapshot("mem", items).save(snap)
    spec = JobSpec(
        method="__main__:BenchMethod",
        out=str(root / f"run{rep}"),
        snapshot=str(snap),
        register=False,
        config={
            "size": cfg.size,
            "batch_size": cfg.batch_size,
            "steps": cfg.steps,
            "channels": list(cfg.channels),
        },
    )
    t0 = time.perf_counter()
    train(spec)
    wall = time.perf_counter() - t0
    steps = [e for e in read_progress(spec.out) if e["event"] == "step"]
    dt = steps[-1]["time"] - steps[0]["time"]
    return (len(steps) - 1) * cfg.batch_size / dt, wall


def run_plain(cfg: BenchConfig) -> tuple[float, float]:
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = UNetLoss(cfg.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(BenchDataset(), batch_size=cfg.batch_size, shuffle=True)
    done, first = 0, None
    while done < cfg.steps:
        for batch in loader:
            loss = model(batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if first is None:
                first = time.perf_counter()
            if done == cfg.steps:
                break
    end = time.perf_counter()
    return (cfg.steps - 1) * cfg.batch_size / (end - first), end - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(steps=40 if args.quick else 120)
    repeats = 3 if args.quick else 5
    SAMPLES.extend(make_samples(64, cfg.size))
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_plain(BenchConfig(steps=3))  # warm up imports / allocator for both
        for rep in range(repeats):
            e_rate, e_wall = run_engine(cfg, Path(tmp), rep)
            p_rate, p_wall = run_plain(cfg)
            ratios.append(e_rate / p_rate)
            rows.append([rep + 1, e_rate, p_rate, e_rate / p_rate, e_wall, p_wall])
    med = statistics.median(ratios)
    table = markdown_table(
        [
            "repeat",
            "engine samples/s",
            "plain samples/s",
            "ratio",
            "engine wall s",
            "plain wall s",
        ],
        rows,
    )
    verdict = "met" if med >= 0.9 else "MISSED"
    body = (
        f"MONAI 2D UNet channels {cfg.channels}, {cfg.size}x{cfg.size} images, 64 in-memory "
        f"samples, batch {cfg.batch_size}, {cfg.steps} steps a run, {repeats} alternating "
        f"repeats, {args.threads} thread(s), CPU. Steady-state rate (first to last step). "
        f"Engine with defaults: progress line every step, checkpoint every 50 steps. "
        f"Wall times include set-up (engine: run folder, snapshot, checkpoints).\n\n"
        f"{table}\n\n**Median ratio engine/plain: {med:.3f}** (goal >= 0.9: {verdict})."
    )
    print(json.dumps({"median_ratio": med}))
    write_section("engine", "Training engine vs plain torch loop", body)


if __name__ == "__main__":
    main()
