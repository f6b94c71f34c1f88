"""IAG-Net on CT phantoms: partial supervision vs |D_u| = 0 vs full masks, and speed.

Trains three models on the same generated volumes (paper Table IV's question):
(a) IAG-Net with a few annotated positives plus weak-only volumes, (b) the same
with |D_u| = 0 (weak-only positives dropped), (c) fully supervised (every training
positive has its mask). Reports mean Dice (eq. 22, gated by eq. 21), sensitivity
and specificity (eq. 21) on held-out volumes, then times 3-view inference on a
512x512x100 volume on CPU in a subprocess (wall time and peak RSS).

    .venv/bin/python benchmarks/bench_iagnet.py [--quick] [--parts accuracy,speed]

Accuracy goes to the ``iagnet`` section of docs/benchmarks.md, speed to
``iagnet-speed``, so either part can be re-run alone (``--parts speed``: ~3 min).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

from napari_wsseg.io.base import ImageData  # noqa: E402
from napari_wsseg.methods.iagnet.data import load_case  # noqa: E402
from napari_wsseg.methods.iagnet.method import IAGNet  # noqa: E402
from napari_wsseg.phantoms.ct import make_case  # noqa: E402
from napari_wsseg.study.snapshot import SnapshotItem  # noqa: E402

WIDTHS = (8, 8, 16, 32, 64, 16)  # benchmark U-Net (paper: (64, 128, 256, 512, 1024, 64))


def roi(vol: np.ndarray) -> np.ndarray:
    """The pancreas region of interest of a phantom (the paper works on pancreas RoIs)."""
    _, ny, nx = vol.shape
    return np.ascontiguousarray(
        vol[:, int(0.26 * ny) : int(0.68 * ny), int(0.14 * nx) : int(0.86 * nx)]
    )


def make_items(
    out: Path,
    n_annot: int,
    n_weak_pos: int,
    n_weak_neg: int,
    n_test: int,
    shape,
    spacing,
    contrast,
    seed: int,
) -> tuple[list, list]:
    """Write phantom volumes as .npy and return (train items, test items)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    plan = [("annot", 1)] * n_annot + [("weak", 1)] * n_weak_pos + [("weak", 0)] * n_weak_neg
    plan += [("test", i % 2) for i in range(n_test)]
    for i, (kind, label) in enumerate(plan):
        case = make_case(rng, label, shape=shape, spacing=spacing, contrast_hu=contrast)
        img, msk = out / f"ct{i:03d}.npy", out / f"ct{i:03d}_mask.npy"
        np.save(img, roi(case.image))
        np.save(msk, roi(case.mask))
        item = SnapshotItem(
            i,
            str(img),
            "ct",
            dict(case.labels),
            reference_mask=str(msk),
            split="val" if kind == "test" else "train",
        )
        if kind == "annot":
            item.mask = str(msk)
        (test if kind == "test" else train).append(item)
    return train, test


PARTS = ("global", "att", "local_annotated", "local_unannotated")


def train(
    method: IAGNet, items: list, steps: int, batch: int, seed: int, device: str = "cpu"
) -> tuple:
    """A plain loop over the method protocol (Adam), returning (model, seconds, losses);
    model and batches on ``device`` (``evaluate`` then predicts there too)."""
    from _device import to

    torch.manual_seed(seed)
    stage = method.stages()[0]
    model = method.build_model().to(device)
    data = method.dataset(items, stage, model)
    opt = torch.optim.Adam(method.trainable(model, stage), lr=stage.lr)
    gen = torch.Generator().manual_seed(seed)
    losses, parts, t0 = [], [], time.perf_counter()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), generator=gen).tolist()
        b = to(method.collate([data[i] for i in idx]), device)
        out = method.training_step(model, b, stage)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        parts.append([out[k].item() for k in PARTS])
        if len(losses) % 100 == 0:
            comp = " ".join(f"{k} {v:.3g}" for k, v in zip(PARTS, np.mean(parts[-100:], 0)))
            print(f"  step {len(losses)}: loss {np.mean(losses[-100:]):.3g} ({comp})", flush=True)
    return model, time.perf_counter() - t0, losses


def evaluate(method: IAGNet, model, items: list) -> dict:
    """Dice on positives (eq. 22, gated by eq. 21 and ungated), sensitivity, specificity."""
    dices, raw, hits = [], [], {0: [], 1: []}
    for it in items:
        vol, ref = load_case(it.path, it.reference_mask)
        maps = method.predict(model, ImageData(vol, "ct", (1.0, 1.0, 1.0)))
        label = int(it.labels["pdac"])
        hits[label].append(maps.probabilities["pdac"] > 0.5)
        if label:
            ref = ref > 0
            for out, pred in (
                (dices, maps.maps["mask_prob"] > 0.5),
                (raw, maps.maps["attention"] + maps.maps["local"] > 1.0),
            ):
                out.append(2 * (pred & ref).sum() / max(pred.sum() + ref.sum(), 1))
    d, u = np.array(dices) * 100, np.array(raw) * 100
    return {
        "dice": d.mean(),
        "sd": d.std(),
        "median": np.median(d),
        "max": d.max(),
        "dice_ungated": u.mean(),
        "sens": 100 * np.mean(hits[1]),
        "spec": 100 * (1 - np.mean(hits[0])),
    }


SPEED_CHILD = """
import os, sys, time, json
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]) or os.cpu_count())
from napari_wsseg.io.base import ImageData
from napari_wsseg.methods.iagnet.method import IAGNet
widths = tuple(int(w) for w in sys.argv[1].split(','))
m = IAGNet(features=widths, chunk_slices=int(sys.argv[3]))
torch.manual_seed(0)
model = m.build_model().eval()
vol = np.random.default_rng(0).normal(40, 30, (100, 512, 512)).astype(np.int16)
def hwm():  # VmHWM, this image's own peak (ru_maxrss of a vfork+exec child starts at the parent's)
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])
base = hwm()
t0 = time.perf_counter()
maps = m.predict(model, ImageData(vol, 'ct', (1.0, 0.8, 0.8)))
dt = time.perf_counter() - t0
peak = hwm()
pg = maps.probabilities['pdac']
print(json.dumps({'seconds': dt, 'peak_mb': peak / 1024, 'before_mb': base / 1024,
                  'threads': torch.get_num_threads(), 'pg': pg}))
"""


def speed(widths, threads: int, chunk: int, timeout: float = 420.0) -> dict:
    """3-view inference on a 512x512x100 volume, in a fresh process (peak RSS is its own).

    ``threads`` 0 = all cores (``os.cpu_count()``), set inside the timed child."""
    cmd = [sys.executable, "-c", SPEED_CHILD, ",".join(map(str, widths)), str(threads), str(chunk)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        nan = float("nan")
        return {"seconds": float("inf"), "peak_mb": nan, "before_mb": nan, "threads": threads}
    return json.loads(res.stdout.strip().splitlines()[-1])


PAPER_CHILD = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from napari_wsseg.methods.iagnet.data import infer_volume
from napari_wsseg.methods.iagnet.method import IAGNet
view, depth, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def hwm():
    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))
    return int(line.split()[1]) / 1024
m = IAGNet(features=(64, 128, 256, 512, 1024, 64), views=(view,), chunk_slices=chunk)
torch.manual_seed(0)
model = m.build_model().eval()
shape = {'axial': (depth, 512, 512), 'coronal': (100, depth, 512)}[view]
vol = np.random.default_rng(0).normal(40, 30, shape).astype(np.int16)
before = hwm()
t0 = time.perf_counter()
infer_volume(model, vol, m.window, chunk)
dt = time.perf_counter() - t0
print(json.dumps({'view': view, 'depth': depth, 'chunk': chunk, 'seconds': dt,
                  'per_slice': dt / depth, 'before_mb': before, 'peak_mb': hwm()}))
"""

# (view, slices, chunk): 512x512 axial slices at chunk 1 and 4, and the 100x512
# slices a coronal or sagittal view cuts (padded to 112x512 by the U-Net)
PAPER_RUNS = (("axial", 2, 1), ("axial", 4, 1), ("axial", 4, 4), ("coronal", 4, 1))


def paper_width(timeout: float = 900.0) -> list[dict]:
    """The paper's U-Net (C = 64) on CPU: seconds per slice and peak RSS per chunk size,
    each run in a fresh process (peak RSS is its own VmHWM)."""
    out = []
    for view, depth, chunk in PAPER_RUNS:
        cmd = [sys.executable, "-c", PAPER_CHILD, view, str(depth), str(chunk)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    return out


def paper_width_text(runs: list[dict]) -> str:
    """Table and the 3-view extrapolation for a 512x512x100 volume."""
    rows = [[r["view"], f"{r['depth']} x {'512x512' if r['view'] == 'axial' else '100x512'}",
             r["chunk"], f"{r['seconds']:.1f}", f"{r['per_slice']:.2f}", f"{r['before_mb']:.0f}",
             f"{r['peak_mb']:.0f}"] for r in runs]  # fmt: skip
    ax = min(r["per_slice"] for r in runs if r["view"] == "axial" and r["chunk"] == 1)
    co = next(r["per_slice"] for r in runs if r["view"] == "coronal")
    total = 100 * ax + 2 * 512 * co  # coronal and sagittal cut 512 slices of 100x512 each
    ax1 = [r for r in runs if r["view"] == "axial" and r["chunk"] == 1]
    flat = max(r["peak_mb"] for r in ax1) - min(r["peak_mb"] for r in ax1)
    return (
        "\n\nPaper width (64, 128, 256, 512, 1024, 64), C = 64, one torch thread, each row a "
        "fresh process (`bench_iagnet.py --parts paper`; load "
        f"{os.getloadavg()[0]:.1f}):\n\n"
        + markdown_table(
            ["view", "slices", "chunk", "seconds", "s / slice", "RSS before MB", "peak RSS MB"],
            rows,
        )  # fmt: skip
        + f"\n\nPeak memory is set by the chunk, not the depth (axial, chunk 1: "
        f"{flat:.0f} MB apart from 2 to 4 slices); a 512x512x100 volume adds its input and "
        f"three float32 output volumes (~350 MB). A 3-view pass (100 axial slices of "
        f"512x512 + 2 x 512 slices of 100x512) extrapolates to {total:.0f} s "
        f"({total / 60:.0f} min) on this CPU: the paper's width needs a GPU (the dock's "
        f"estimate warns before such a run starts on a CPU)."
    )


def accuracy(args: argparse.Namespace) -> None:
    """Runs (a)-(c) and the per-voxel-mean variant; writes the ``iagnet`` section."""
    torch.set_num_threads(args.threads or os.cpu_count())
    q = args.quick
    n_annot, n_wpos, n_wneg, n_test = (2, 6, 4, 6) if q else (4, 10, 10, 12)
    steps = args.steps or (300 if q else 1200)
    shape, spacing, contrast = (32, 96, 96), (1.25, 1.0, 1.0), (50.0, 70.0)
    views = tuple(v.strip() for v in args.views.split(","))
    from _device import device_of

    dev = device_of(args.device)
    cfg = dict(features=WIDTHS, views=views, lr=1e-3, max_slices=8, chunk_slices=16)
    rows, raw = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        train_items, test_items = make_items(
            Path(tmp), n_annot, n_wpos, n_wneg, n_test, shape, spacing, contrast, seed=0
        )
        full_items = [SnapshotItem(**{**it.__dict__}) for it in train_items]
        for it in full_items:
            if it.labels["pdac"]:
                it.mask = it.reference_mask
        runs = [
            ("(a) IAG-Net", IAGNet(**cfg), train_items, n_annot, n_wpos),
            (
                "(b) IAG-Net, \\|D_u\\| = 0",
                IAGNet(use_unannotated=False, **cfg),
                train_items,
                n_annot,
                0,
            ),
            ("(c) fully supervised", IAGNet(**cfg), full_items, n_annot + n_wpos, 0),
            (
                "(a) with per-voxel means in (3), (15)",
                IAGNet(voxel_reduction="mean", **cfg),
                train_items,
                n_annot,
                n_wpos,
            ),
        ]
        for name, method, items, n_l, n_u in runs:
            model, secs, losses = train(method, items, steps, batch=1, seed=1, device=dev)
            r = evaluate(method, model, test_items)
            raw[name] = {**r, "train_s": secs}
            rows.append(
                [
                    name,
                    n_l,
                    n_u,
                    n_wneg,
                    f"{r['dice']:.1f} ± {r['sd']:.1f}",
                    f"{r['median']:.1f}",
                    f"{r['max']:.1f}",
                    f"{r['sens']:.0f}",
                    f"{r['spec']:.0f}",
                    f"{np.mean(losses[:20]):.3g} → {np.mean(losses[-20:]):.3g}",
                    f"{secs:.0f}",
                ]
            )
            print(name, raw[name], flush=True)
    header = [
        "run",
        "annotated pos.",
        "weak-only pos.",
        "negatives",
        "Dice % mean ± sd",
        "median",
        "max",
        "sens. %",
        "spec. %",
        "loss first→last 20",
        "train s",
    ]
    body = (
        f"CT phantoms from `phantoms/ct.py`: {shape} voxels at {spacing} mm, lesion "
        f"{contrast[0]:g}-{contrast[1]:g} HU below the organ (noise 12 HU; the generator's "
        f"default is 30-50 HU, too faint for this training budget), cropped to the pancreas "
        f"region (as the paper's RoIs) = {roi(np.zeros(shape)).shape}. Training: {n_annot} "
        f"annotated positives, {n_wpos} weak-only positives, {n_wneg} weak-only negatives; "
        f"test: {n_test} volumes ({n_test - n_test // 2} normal, {n_test // 2} PDAC). "
        f"Views trained: {', '.join(views)}; BasicUNet widths {WIDTHS} (C = {WIDTHS[-1]}; "
        f"paper C = 64), Adam lr {cfg['lr']}, {steps} steps of one volume (<= 8 slices at a "
        f"random interval 1-5), no pretraining (paper: 120k steps from a pretrained U-Net). "
        f"Dice: eq. (22) mask (p + q > 1) on the test positives, empty where eq. (21) says "
        f"normal; sens./spec.: eq. (21). Device {args.device}; wall time = the train s "
        f"column plus scoring.\n\n" + markdown_table(header, rows)
    )
    write_section("iagnet", "IAG-Net (CT, partially supervised PDAC)", body)


OLD_SPEED = re.compile(r"\n\nSpeed: 3-view inference.*?(?=\n<!-- iagnet:end -->)", re.S)
SECTION = re.compile(
    r"<!-- iagnet:start -->\n## [^\n]*\n\n_([^\n]*)_\n\n(.*?)\n<!-- iagnet:end -->", re.S
)


def split_old_section() -> None:
    """Before speed had its own section, ``iagnet`` ended with a speed paragraph: drop
    it (superseded by ``iagnet-speed``) and keep the accuracy text, with its own date."""
    from _report import DOC

    m = SECTION.search(DOC.read_text()) if DOC.exists() else None
    if m is None or not OLD_SPEED.search(m.group(0)):
        return
    body = OLD_SPEED.sub("", m.group(0))
    body = SECTION.search(body).group(2)
    note = f"Accuracy run of {m.group(1)} (speed: see the IAG-Net speed section).\n\n"
    write_section("iagnet", "IAG-Net (CT, partially supervised PDAC)", note + body)


def speed_part(args: argparse.Namespace) -> None:
    """3-view 512x512x100 inference at 1 thread and at all cores; ``iagnet-speed`` section."""
    chunk = args.chunk
    runs = []
    for threads in (1, 0):
        sp = speed(WIDTHS, threads, chunk)
        runs.append(sp)
        print(f"threads {sp['threads']}: {sp}", flush=True)
    rows = [
        [
            sp["threads"],
            f"{sp['seconds']:.1f}" if np.isfinite(sp["seconds"]) else "> 420",
            f"{sp['peak_mb']:.0f}",
            f"{sp['before_mb']:.0f}",
            "yes" if sp["seconds"] < 60 else "no",
        ]
        for sp in runs
    ]
    header = ["threads", "seconds", "peak RSS MB", "RSS before predict MB", "< 60 s"]
    body = (
        f"3-view (axial, coronal, sagittal) inference of one 512x512x100 int16 volume on "
        f"CPU through `IAGNet.predict` (P_g, p_x, q_x, fused mask_prob), {chunk} slices per "
        f"chunk, in a fresh process per row (`bench_iagnet.py --parts speed`). Widths "
        f"{WIDTHS} (C = {WIDTHS[-1]}), the width the accuracy runs above are trained at: "
        f"the paper's U-Net (64..1024, C = 64) is far too slow for a CPU (next "
        f"section). Goal < 60 s. The machine is shared (load {os.getloadavg()[0]:.1f} at "
        f"the start), so times are noisy.\n\n" + markdown_table(header, rows)
    )
    write_section("iagnet-speed", "IAG-Net speed (CT, 3-view inference on CPU)", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer volumes and steps")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="accuracy runs (0 = all cores)")
    ap.add_argument("--parts", default="accuracy,speed", help="accuracy, speed, paper")
    ap.add_argument("--views", default="axial", help="views trained for the accuracy runs")
    ap.add_argument("--chunk", type=int, default=8, help="slices per chunk in the speed part")
    from _device import add_device_arg

    add_device_arg(ap)  # accuracy part; the speed part measures the CPU by design
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"accuracy", "speed", "paper"}:
        ap.error(f"--parts: expected accuracy, speed and/or paper, got {args.parts!r}")
    if "accuracy" in parts:
        accuracy(args)
    else:
        split_old_section()
    if "speed" in parts:
        speed_part(args)
    if "paper" in parts:
        write_section("iagnet-paper", "IAG-Net at the paper's width (C = 64) on CPU",
                      paper_width_text(paper_width()).lstrip())  # fmt: skip


if __name__ == "__main__":
    main()
