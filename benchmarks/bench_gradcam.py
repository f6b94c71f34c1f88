"""Grad-CAM speed: ours vs one no-grad forward vs MONAI's GradCAM (DenseNet121, CPU).

Run: ``.venv/bin/python benchmarks/bench_gradcam.py [--quick]``. One process, all
timings side by side (median of ``--repeats`` runs after a warm-up).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, markdown_table, write_section  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="256 px input, 1 repeat")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    size, repeats = (256, 1) if args.quick else (args.size, args.repeats)
    torch.set_num_threads(args.threads)
    from monai.networks.nets import DenseNet121
    from monai.visualize import GradCAM

    from napari_wsseg.methods.saliency import default_target_layer, normalize_maps, saliency_maps

    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=10).eval()
    layer = default_target_layer(net)
    x = torch.randn(1, 1, size, size)
    monai_cam = GradCAM(copy.deepcopy(net), layer, postprocessing=normalize_maps)

    def forward():
        with torch.no_grad():
            net(x)

    rows_fn = [
        ("no-grad forward (floor)", forward),
        ("ours Grad-CAM, K=1", lambda: saliency_maps(net, x, classes=[0])),
        ("ours Grad-CAM, K=10", lambda: saliency_maps(net, x)),
        ("MONAI GradCAM, K=1", lambda: monai_cam(x, class_idx=0)),
        ("MONAI GradCAM, K=10", lambda: [monai_cam(x, class_idx=k) for k in range(10)]),
    ]
    times = [(name, timed(fn, repeats)) for name, fn in rows_fn]
    base = times[0][1]
    goals = {"ours Grad-CAM, K=1": 1.2, "ours Grad-CAM, K=10": 1.5}
    rows = []
    for name, t in times:
        goal = goals.get(name)
        verdict = (
            "" if goal is None else (f"<= {goal}x: " + ("met" if t / base <= goal else "MISSED"))
        )
        rows.append([name, f"{t * 1000:.0f}", f"{t / base:.2f}x", verdict])
    table = markdown_table(["run", "median ms", "vs forward", "goal"], rows)
    diff = (saliency_maps(net, x, classes=[3]) - monai_cam(x, class_idx=3)).abs().max().item()
    body = (
        f"DenseNet121 (MONAI, random weights, 1 input channel, 10 outputs), one "
        f"{size}x{size} image, target layer `{layer}`, {args.threads} CPU thread(s), median "
        f"of {repeats} run(s) after a warm-up, all in one process. Machine: {machine()}.\n\n"
        f"{table}\n\nOurs: one no-grad forward whose target-layer hook turns grad on, then "
        f"K backward passes through the head only. MONAI repeats a full grad forward + "
        f"backward per class. Max |ours - MONAI| on the same normalised map (class 3): "
        f"{diff:.2e}.\n"
    )
    print(body)
    write_section("gradcam", "Grad-CAM speed (saliency.py vs MONAI)", body)


if __name__ == "__main__":
    main()
