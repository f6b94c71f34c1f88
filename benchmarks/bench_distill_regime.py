"""Distill-to-Label in the paper's regime, with seeds and 95 % CIs (issue 15).

Claims (Sharma et al.): (1) VAT lifts the teacher's bag AUROC, most at small N
(Fig. 2, MNIST bags); (2) on instances, teacher (VAT) > plain attention MIL and
student > teacher (Tables I/II: accuracy, F1, AUROC, 5-fold CV).

(a) Digit bags (scikit-learn's 8x8 digits for MNIST): bags ~N(K, 5) digits, positive
    if one is a 9; N in {25, 50} training bags, K = 10; 1000 test bags; each seed a
    new split, new bags and new weights. Bag AUROC; instance accuracy / F1 / AUROC
    of every test digit as a bag of size 1.
(b) Slide phantoms at a 1-3 % tumour share (positive slides drawn until 1-3 % of their
    foreground tiles are tumour), N = 20 training slides, K <= 64 tiles a step,
    5 folds (each a fresh draw of slides and weights). Tile accuracy / F1 / AUROC.

Every claim is a paired difference per seed/fold with a Student-t 95 % CI; the
verdict follows from the CI (``_stats.verdict``).

Run: ``.venv/bin/python benchmarks/bench_distill_regime.py [--quick] [--parts digits,slides]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402
from _stats import CLAIM_HEADER, claim_row, fmt_ci  # noqa: E402
from bench_distill import digit_bags, instance_metrics, probs, train_stage  # noqa: E402

from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel, SlideBags  # noqa: E402
from napari_wsseg.methods.distill.nets import DistillModel  # noqa: E402

METRICS = ("accuracy", "F1", "AUROC")
MODELS = ("mil", "teacher", "student")


def _fit(batch, steps: int, seed: int, kw: dict, lr: float) -> dict:
    """Plain MIL and VAT teacher (same bag order), then the student from the VAT teacher."""
    models = {}
    for name, vat in (("mil", False), ("vat", True)):
        torch.manual_seed(seed)
        models[name] = DistillModel(DistillConfig(vat=vat, **kw))
        train_stage(models[name], batch, "teacher", steps, lr, seed)
    train_stage(models["vat"], batch, "student", steps // 2, lr, seed + 1)
    return {"mil": models["mil"].teacher, "teacher": models["vat"].teacher,
            "student": models["vat"].student}  # fmt: skip


def digits_seed(n: int, k: int, seed: int, steps: int, n_test: int) -> dict:
    """Scores of one seed: bag AUROC per model and instance metrics per model."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import roc_auc_score

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    tr, te = perm[: len(y) // 2], perm[len(y) // 2 :]
    train, ytrain = digit_bags(x[tr], y[tr], n, rng, mean_k=k)
    test, ytest = digit_bags(x[te], y[te], n_test, rng, mean_k=k)
    order = np.random.default_rng(seed + 7).integers(0, n, steps)

    def batch(step: int) -> dict:
        return {"tiles": train[order[step]][None], "label": torch.tensor([ytrain[order[step]]])}

    kw = {"in_channels": 1, "channels": (16, 32), "hidden": 64, "feat_dim": 32, "attn_dim": 16}
    nets = _fit(batch, steps, seed, kw, 1e-3)
    xi, yi = torch.from_numpy(x[te]).unsqueeze(1), (y[te] == 9).astype(float)
    out = {}
    for key, net in nets.items():
        out[key] = {"bag AUROC": roc_auc_score(ytest, [probs(net, b)[0] for b in test])}
        out[key].update(zip(METRICS, instance_metrics(yi, probs(net, xi)[1])))
    return out


def rare_tumour_slides(rng, n: int, shape, method, lo=0.01, hi=0.03, tries=40):
    """n slides, half positive with a tumour share of foreground tiles in [lo, hi]
    (the draw closest to the range after ``tries``); bags, labels, tile labels, shares."""
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.methods.tiling import tile_labels
    from napari_wsseg.phantoms.slide import make_case

    out = []
    for i in range(n):
        best = None
        for _ in range(tries if i % 2 else 1):
            case = make_case(rng, i % 2, shape=shape)
            bag = method.bag_of(ImageData(case.image, "slide", (0.5, 0.5), rgb=True))
            lab = tile_labels(case.mask, bag.grid)[bag.rows, bag.cols]
            share = float(lab.mean()) if len(lab) else 0.0
            dist = 0.0 if lo <= share <= hi else min(abs(share - lo), abs(share - hi))
            if i % 2 and share == 0:
                dist = 1.0  # a positive slide needs a tumour tile
            if best is None or dist < best[0]:
                best = (dist, bag, float(i % 2), lab, share)
            if dist == 0.0:
                break
        out.append(best[1:])
    return out


def slides_fold(fold: int, n_train: int, n_test: int, shape, steps: int, max_bag: int) -> dict:
    rng = np.random.default_rng(100 + fold)
    method = DistillToLabel(DistillConfig(max_bag=max_bag))
    train = rare_tumour_slides(rng, n_train, shape, method)
    test = rare_tumour_slides(rng, n_test, shape, method)
    ds = SlideBags([t[0] for t in train], [t[1] for t in train], max_bag)
    order = np.random.default_rng(fold + 1).permutation(10**5) % n_train

    def batch(step):
        return method.collate([ds[int(order[step])]])

    nets = _fit(batch, steps, fold, {"max_bag": max_bag}, 3e-4)
    yi = np.concatenate([t[2] for t in test])
    out = {"shares": [t[3] for t in train if t[1] > 0.5], "tiles": int(len(yi)),
           "tumour_tiles": int(yi.sum())}  # fmt: skip
    for key, net in nets.items():
        pi = [probs(net, torch.from_numpy(t[0].tiles).permute(0, 3, 1, 2).float() / 255)[1]
              for t in test]  # fmt: skip
        out[key] = dict(zip(METRICS, instance_metrics(yi, np.concatenate(pi))))
    return out


def claims(res: list[dict], regime: str, bag: bool) -> tuple[list, list]:
    """Per-model mean [CI] table rows and the claim rows (paired per seed)."""
    keys = (("bag AUROC",) if bag else ()) + METRICS
    table = [[m] + [fmt_ci([r[m][k] for r in res], 3) for k in keys]
             for m in ("mil", "teacher", "student")]  # fmt: skip
    rows = []
    if bag:
        diffs = [r["teacher"]["bag AUROC"] - r["mil"]["bag AUROC"] for r in res]
        claim = "VAT teacher > plain MIL, bag AUROC (Fig. 2)"
        rows.append(claim_row(claim, "higher (plotted only)", diffs, regime))
    # Tables I/II averages, colon / breast: teacher - MIL, student - teacher.
    paper = {
        "accuracy": ("+0.06 / +0.32", "+0.04 / +0.05"),
        "F1": ("+0.12 / +0.30", "+0.07 / +0.04"),
        "AUROC": ("+0.03 / +0.11", "+0.02 / +0.04"),
    }
    for k in METRICS:
        rows.append(claim_row(f"teacher > MIL, instance {k}", paper[k][0] + " (colon / breast)",
                              [r["teacher"][k] - r["mil"][k] for r in res], regime))  # fmt: skip
        diffs = [r["student"][k] - r["teacher"][k] for r in res]
        rows.append(claim_row(f"student > teacher, instance {k}", paper[k][1], diffs, regime))
    return table, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, fewer steps")
    ap.add_argument("--parts", default="digits,slides")
    ap.add_argument("--seeds", type=int, default=5, help="seeds (digits) / folds (slides)")
    ap.add_argument("--sizes", default="25,50", help="N training bags (digits)")
    ap.add_argument("--k", type=int, default=10, help="mean bag size K (digits)")
    ap.add_argument("--steps", type=int, default=1000, help="teacher steps (digits)")
    ap.add_argument("--slide-steps", type=int, default=900)
    ap.add_argument("--slide-shape", type=int, default=384)
    ap.add_argument("--max-bag", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(2 if args.quick else args.seeds))
    parts, body, summary = args.parts.split(","), [], []
    t_all = time.perf_counter()
    if "digits" in parts:
        for n in [int(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            steps = 400 if args.quick else args.steps
            res = []
            for s in seeds:
                res.append(digits_seed(n, args.k, s, steps, 300 if args.quick else 1000))
                print(
                    f"digits N={n} seed {s}:",
                    {m: round(v["bag AUROC"], 3) for m, v in res[-1].items()},
                    flush=True,
                )
            regime = f"digit bags N={n}, K={args.k}, {len(seeds)} seeds"
            table, rows = claims(res, regime, bag=True)
            summary += rows
            body.append(
                f"### Digit bags, N = {n}, K = {args.k}\n\n{len(seeds)} seeds (new split, bags, "
                f"weights); teacher {steps} steps, student {steps // 2}, Adam 1e-3, batch 1; "
                f"1000 test bags. Mean [95 % CI] over seeds; {time.perf_counter() - t0:.0f} s.\n\n"
                + markdown_table(
                    ["model", "bag AUROC", *[f"instance {m}" for m in METRICS]], table
                )
            )
    if "slides" in parts:
        t0 = time.perf_counter()
        shape = (args.slide_shape,) * 2
        n_train, n_test = (10, 6) if args.quick else (20, 10)
        steps = 300 if args.quick else args.slide_steps
        res = []
        for f in seeds:
            res.append(slides_fold(f, n_train, n_test, shape, steps, args.max_bag))
            scores = {m: {k: round(v, 3) for k, v in res[-1][m].items()} for m in MODELS}
            print(f"slides fold {f}:", scores, flush=True)
        shares = np.concatenate([r["shares"] for r in res])
        share = f"{shares.min():.1%}-{shares.max():.1%}"
        regime = f"slide phantoms N={n_train}, tumour {share}, {len(seeds)} folds"
        table, rows = claims(res, regime, bag=False)
        summary += rows
        body.append(
            f"### Slide phantoms, rare tumour\n\n{n_train} training / {n_test} test slides of "
            f"{shape[0]}x{shape[1]} px per fold (half positive), 32x32 tiles; positive slides' "
            f"tumour share of foreground tiles {shares.min():.1%}-{shares.max():.1%} (median "
            f"{np.median(shares):.1%}); up to {args.max_bag} tiles a step; test tiles per fold "
            f"{min(r['tiles'] for r in res)}-{max(r['tiles'] for r in res)} (tumour "
            f"{min(r['tumour_tiles'] for r in res)}-{max(r['tumour_tiles'] for r in res)}). "
            f"{steps} teacher steps, student {steps // 2}, Adam 3e-4; {len(seeds)} folds; "
            f"{time.perf_counter() - t0:.0f} s.\n\n"
            + markdown_table(["model", *[f"tile {m}" for m in METRICS]], table)
        )
    text = (
        "Claims as paired differences per seed/fold, 95 % Student-t CI; verdict from the CI "
        "(reproduced: CI > 0; not reproduced: CI < 0; else inconclusive). Paper numbers: "
        "Tables I/II averages (colon / breast) and Fig. 2.\n\n"
        + markdown_table(CLAIM_HEADER, summary)
        + "\n\n"
        + "\n\n".join(body)
        + f"\n\nTotal {time.perf_counter() - t_all:.0f} s, 1 torch thread"
        + (" (--quick)." if args.quick else ".")
    )
    write_section("distill-regime", "Distill-to-Label in the paper's regime (issue 15)", text)
    from _summary import write_summary

    write_summary()


if __name__ == "__main__":
    main()
