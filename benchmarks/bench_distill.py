"""Distill-to-Label benchmark: digit bags, slide phantoms, and tiles/s on CPU.

(a) Digit bags (the paper's MNIST study, on scikit-learn's bundled 8x8 digits): a
bag holds ~N(10, 5) digits and is positive if it holds a 9. Bag AUC on 1000 test
bags for N = 50/100/200 training bags with and without VAT; instance accuracy / F1
/ AUROC (each digit as a bag of size 1, threshold 0.5) for plain attention MIL,
the VAT teacher and the student.
(b) The same on slide phantoms (``phantoms.slide``), tiles 32x32 at level 0.
(c) Tiles/s through teacher + student (inference) on CPU for 32x32 tiles.

Run: ``.venv/bin/python benchmarks/bench_distill.py [--quick] [--parts digits,slides,speed]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import add_device_arg, device_of  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402

from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel, SlideBags  # noqa: E402
from napari_wsseg.methods.distill.nets import DistillModel  # noqa: E402


def instance_metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Accuracy and F1 at 0.5, and AUROC."""
    from sklearn.metrics import f1_score, roc_auc_score

    pred = p >= 0.5
    return float((pred == (y > 0.5)).mean()), float(f1_score(y > 0.5, pred, zero_division=0)), \
        float(roc_auc_score(y, p))  # fmt: skip


DEVICE = torch.device("cpu")  # --device (training and scoring; the speed part is CPU)


def train_stage(
    model: DistillModel, bags, stage: str, steps: int, lr: float, seed: int, device=None
) -> None:
    """Adam on one stage; ``bags`` is a callable step -> batch dict (moved to ``device``,
    default ``DEVICE``, where the model is moved too)."""
    from _device import to

    device = device or DEVICE
    torch.manual_seed(seed)
    model.to(device)
    part = getattr(model, stage)
    opt = torch.optim.Adam(part.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        loss = model(to(bags(step), device), stage=stage)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def probs(net, x: torch.Tensor) -> tuple[float, np.ndarray]:
    """Bag probability and per-instance (bag of size 1) probabilities."""
    h = net.features(x.to(next(net.parameters()).device))
    inst = torch.sigmoid(net.instance_logits_from(h)).cpu().numpy()
    return float(torch.sigmoid(net.pool(h)[0])), inst


# --- (a) digit bags -----------------------------------------------------------------
def digit_bags(x, y, n, rng, mean_k=10, var_k=5.0, target=9):
    """``n`` bags, half positive: sizes ~ round(N(mean_k, var_k)) >= 2."""
    pos_idx, neg_idx = np.flatnonzero(y == target), np.flatnonzero(y != target)
    bags, labels = [], []
    for i in range(n):
        k = max(2, int(round(rng.normal(mean_k, np.sqrt(var_k)))))
        if i % 2 == 0:
            idx = rng.choice(len(y), k, replace=False)
            if not (y[idx] == target).any():
                idx[rng.integers(k)] = rng.choice(pos_idx)
        else:
            idx = rng.choice(neg_idx, k, replace=False)
        bags.append(torch.from_numpy(x[idx]).unsqueeze(1))
        labels.append(float((y[idx] == target).any()))
    return bags, labels


def train_digit_models(train: list, ytrain: list, steps: int, seed: int) -> dict:
    """Plain MIL (no VAT) and VAT teacher -> student, on the same bag order."""
    kw = {"in_channels": 1, "channels": (16, 32), "hidden": 64, "feat_dim": 32, "attn_dim": 16}
    order = np.random.default_rng(seed + 7).integers(0, len(train), steps)

    def batch(step: int) -> dict:
        return {"tiles": train[order[step]][None], "label": torch.tensor([ytrain[order[step]]])}

    models = {}
    for name, vat in (("mil", False), ("vat", True)):
        torch.manual_seed(seed)
        models[name] = DistillModel(DistillConfig(vat=vat, **kw))
        train_stage(models[name], batch, "teacher", steps, 1e-3, seed)
    train_stage(models["vat"], batch, "student", steps // 2, 1e-3, seed + 1)
    return models


def run_digits(quick: bool, seeds: list[int]) -> str:
    from sklearn.datasets import load_digits
    from sklearn.metrics import roc_auc_score

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target
    sizes = [50, 100] if quick else [50, 100, 200]
    rows_bag, rows_inst = [], []
    for n in sizes:
        res = {k: [] for k in ("auc_mil", "auc_vat", "auc_stu", "mil", "teacher", "student")}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            perm = rng.permutation(len(y))
            tr, te = perm[: len(y) // 2], perm[len(y) // 2 :]
            train, ytrain = digit_bags(x[tr], y[tr], n, rng)
            test, ytest = digit_bags(x[te], y[te], 300 if quick else 1000, rng)
            steps = max(1000 if quick else 1500, 15 * n)
            models = train_digit_models(train, ytrain, steps, seed)
            nets = {"mil": models["mil"].teacher, "teacher": models["vat"].teacher,
                    "student": models["vat"].student}  # fmt: skip
            for key, auc_key in (
                ("mil", "auc_mil"),
                ("teacher", "auc_vat"),
                ("student", "auc_stu"),
            ):
                res[auc_key].append(roc_auc_score(ytest, [probs(nets[key], b)[0] for b in test]))
            xi = torch.from_numpy(x[te]).unsqueeze(1)
            yi = (y[te] == 9).astype(float)
            for key, net in nets.items():
                res[key].append(instance_metrics(yi, probs(net, xi)[1]))
        m = {k: np.mean(v, axis=0) for k, v in res.items()}
        rows_bag.append([n, m["auc_mil"], m["auc_vat"], m["auc_stu"]])
        for key in ("mil", "teacher", "student"):
            rows_inst.append([n, key, *[float(v) for v in m[key]]])
        print(rows_bag[-1], rows_inst[-3:], flush=True)
    return (
        f"Bags of 8x8 digits (~N(10, 5) per bag, positive if it holds a 9, half positive); "
        f"train/test digits split 50/50; {300 if quick else 1000} test bags; "
        f"mean over seeds {seeds}. Adam 1e-3, batch 1, teacher max(1500, 15N) steps, "
        f"student half that; breast-set lambdas.\n\n"
        + markdown_table(
            ["N bags", "bag AUC MIL (no VAT)", "bag AUC teacher (VAT)", "bag AUC student"],
            rows_bag,
        )
        + "\n\nInstances (each test digit as a bag of size 1; 9 = positive):\n\n"
        + markdown_table(["N bags", "model", "accuracy", "F1", "AUROC"], rows_inst)
    )


# --- (b) slide phantoms -------------------------------------------------------------
def run_slides(quick: bool, steps: int, max_bag: int, lr: float, seed: int = 0) -> str:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.methods.tiling import tile_labels
    from napari_wsseg.phantoms.slide import make_case

    n_train, n_test = (12, 6) if quick else (24, 10)
    shape = (512, 512) if quick else (768, 768)
    cfg = DistillConfig(max_bag=max_bag, lr=lr)
    method = DistillToLabel(cfg)
    rng = np.random.default_rng(seed)

    def bag(i):
        case = make_case(rng, i % 2, shape=shape)
        b = method.bag_of(ImageData(case.image, "slide", (0.5, 0.5), rgb=True))
        lab = tile_labels(case.mask, b.grid)[b.rows, b.cols]
        return b, float(case.labels["tumor"]), lab

    t0 = time.perf_counter()
    train = [bag(i) for i in range(n_train)]
    test = [bag(i) for i in range(n_test)]
    gen_s = time.perf_counter() - t0
    ds = SlideBags([b for b, _, _ in train], [lab for _, lab, _ in train], cfg.max_bag)
    order = np.random.default_rng(seed + 1).permutation(10**5) % n_train

    def batch(step):
        return method.collate([ds[int(order[step])]])

    models, times = {}, {}
    for name, vat in (("mil", False), ("vat", True)):
        torch.manual_seed(seed)
        models[name] = DistillModel(DistillConfig(vat=vat, max_bag=max_bag))
        t0 = time.perf_counter()
        train_stage(models[name], batch, "teacher", steps, cfg.lr, seed)
        times[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_stage(models["vat"], batch, "student", steps, cfg.lr, seed + 1)
    times["student"] = time.perf_counter() - t0
    from sklearn.metrics import roc_auc_score

    rows = []
    yb = [lab for _, lab, _ in test]
    yi = np.concatenate([li for _, _, li in test])
    nets = {"plain MIL": models["mil"].teacher, "teacher (VAT)": models["vat"].teacher,
            "student": models["vat"].student}  # fmt: skip
    for key, net in nets.items():
        pb, pi = [], []
        for b, _, _ in test:
            x = torch.from_numpy(b.tiles).permute(0, 3, 1, 2).float() / 255
            p, q = probs(net, x)
            pb.append(p)
            pi.append(q)
        rows.append([key, roc_auc_score(yb, pb), *instance_metrics(yi, np.concatenate(pi))])
        print(rows[-1], flush=True)
    n_tiles = sum(len(b) for b, _, _ in train)
    pos = [(len(b), int(li.sum())) for b, y, li in train if y > 0.5]
    frac = np.array([m / n for n, m in pos])
    # chance that a sampled sub-bag of a positive slide holds no tumour tile (label noise)
    miss = [math.comb(n - m, min(n, cfg.max_bag)) / math.comb(n, min(n, cfg.max_bag))
            for n, m in pos]  # fmt: skip
    return (
        f"{n_train} training / {n_test} test phantom slides of {shape[0]}x{shape[1]} px "
        f"(half positive), 32x32 tiles at level 0, {n_tiles} training foreground tiles "
        f"(tumour tiles: {int(sum(li.sum() for _, _, li in train))}); tile label = tumour "
        f"covers >= 50 % of the tile. Tumour tiles per positive training slide: "
        f"{frac.min():.1%} to {frac.max():.1%} (median {np.median(frac):.1%}) of its "
        f"foreground tiles; bag sizes {min(n for n, _ in pos)}-{max(n for n, _ in pos)}. "
        f"Up to {cfg.max_bag} tiles sampled per step: the chance that a positive "
        f"slide's sub-bag holds no tumour tile is at most {max(miss):.2%} "
        f"(mean {np.mean(miss):.2%}). "
        f"{steps} steps per stage, Adam {cfg.lr}. Test tiles: {len(yi)} "
        f"({int(yi.sum())} tumour). Generation {gen_s:.0f} s; training "
        f"{times['mil']:.0f} / {times['vat']:.0f} / {times['student']:.0f} s "
        f"(MIL / VAT teacher / student).\n\n"
        + markdown_table(["model", "slide AUC", "tile accuracy", "tile F1", "tile AUROC"], rows)
    )


# --- (c) speed ----------------------------------------------------------------------
@torch.no_grad()
def run_speed(seconds: float = 5.0) -> str:
    import os

    rows = []
    load_before = os.getloadavg()[0]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model = DistillModel(DistillConfig()).eval()
        x = torch.rand(512, 3, 32, 32)
        for _ in range(2):
            model.teacher.features(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            ht = model.teacher.features(x)
            model.teacher.attention.scores(ht)
            hs = model.student.features(x)
            model.student.instance_logits_from(hs)
            model.student.attention.scores(hs)
            n += len(x)
        rate = n / (time.perf_counter() - t0)
        rows.append([threads, round(rate), "yes" if rate >= 2000 else "no",
                     round(os.getloadavg()[0], 1)])  # fmt: skip
        print(rows[-1], flush=True)
    return (
        "Inference of both nets (features, attention scores, tile logits) on batches of "
        "512 random 32x32 RGB tiles, default config (conv 16-32-32, FC 128-64), measured in "
        f"one run; goal >= 2000 tiles/s. The machine (2 cores) is shared by several "
        f"engineers: 1-min load average {load_before:.1f} before the run (a quiet machine "
        f"is < 1), so these are lower bounds.\n\n"
        + markdown_table(["torch threads", "tiles/s", ">= 2000", "load avg after"], rows)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run")
    ap.add_argument("--parts", default="digits,slides,speed")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--slide-steps", type=int, default=0, help="steps per stage on slides")
    ap.add_argument("--max-bag", type=int, default=128, help="tiles sampled per slide a step")
    ap.add_argument("--lr", type=float, default=3e-4, help="Adam lr on slides")
    add_device_arg(ap)
    args = ap.parse_args()
    global DEVICE
    DEVICE = device_of(args.device)
    parts = args.parts.split(",")
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    body = []
    t0 = time.perf_counter()
    if "digits" in parts:
        body.append("### Digit bags (scikit-learn 8x8 digits)\n\n" + run_digits(args.quick, seeds))
    if "slides" in parts:
        body.append(
            "### Slide phantoms\n\n"
            + run_slides(
                args.quick, args.slide_steps or (400 if args.quick else 600), args.max_bag, args.lr
            )
        )
    body.append(
        f"Total time {time.perf_counter() - t0:.0f} s (wall; training with 1 torch thread, "
        f"device {args.device})."
    )
    if len(body) > 1:
        write_section("distill", "Distill-to-Label (slides, issue 6)", "\n\n".join(body))
    if "speed" in parts:  # its own section, so it can be re-measured on a quiet machine
        torch.set_num_threads(n_threads)
        write_section("distill-speed", "Distill-to-Label: tiles/s on CPU", run_speed())


if __name__ == "__main__":
    main()
