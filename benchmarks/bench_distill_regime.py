"""Distill-to-Label in the paper's regime, with seeds and 95 % CIs (issue 15).

Claims (Sharma et al.): (1) VAT lifts the teacher's bag AUROC, most at small N
(Fig. 2, MNIST bags); (2) on instances, teacher (VAT) > plain attention MIL and
student > teacher (Tables I/II: accuracy, F1, AUROC, 5-fold CV).

(a) Digit bags (scikit-learn's 8x8 digits for MNIST): bags ~N(K, 5) digits, positive
    if one is a 9; N in {25, 50} training bags, K = 10; 1000 test bags; each seed a
    new split, new bags and new weights. Bag AUROC; instance accuracy / F1 / AUROC
    of every test digit as a bag of size 1.
(b) Slide phantoms at a 1-3 % tumour share (positive slides drawn until 1-3 % of their
    foreground tiles are tumour), N = 20 training slides, K <= 64 tiles a step, up to
    3000 teacher steps with each model's step picked on 6 validation slides (``--select
    none`` keeps the last step), 5 folds (each a fresh draw of slides and weights).
    Slide AUROC, tile accuracy / F1 / AUROC; per-fold results cached under
    benchmarks/results/ (``_distill_slides.py``).

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
from _device import add_device_arg, device_of
from _distill_slides import (
    CACHE,
    METRICS,
    MODELS,
    cached_fold,
    claims,
    fit,
    slides_report,
)
from _report import markdown_table, write_section
from _stats import CLAIM_HEADER
from bench_distill import digit_bags, instance_metrics, probs

DEVICE = torch.device("cpu")  # set from --device in main()


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
        return {
            "tiles": train[order[step]][None],
            "label": torch.tensor([ytrain[order[step]]]),
        }

    kw = {
        "in_channels": 1,
        "channels": (16, 32),
        "hidden": 64,
        "feat_dim": 32,
        "attn_dim": 16,
    }
    nets = fit(batch, steps, seed, kw, 1e-3, DEVICE)
    xi, yi = torch.from_numpy(x[te]).unsqueeze(1), (y[te] == 9).astype(float)
    out = {}
    for key, net in nets.items():
        out[key] = {"bag AUROC": roc_auc_score(ytest, [probs(net, b)[0] for b in test])}
        out[key].update(zip(METRICS, instance_metrics(yi, probs(net, xi)[1])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, fewer steps")
    ap.add_argument("--parts", default="digits,slides")
    ap.add_argument("--seeds", type=int, default=5, help="seeds (digits) / folds (slides)")
    ap.add_argument("--sizes", default="25,50", help="N training bags (digits)")
    ap.add_argument("--k", type=int, default=10, help="mean bag size K (digits)")
    ap.add_argument("--steps", type=int, default=1000, help="teacher steps (digits)")
    ap.add_argument("--slide-steps", type=int, default=3000, help="teacher steps (slides)")
    ap.add_argument(
        "--select",
        choices=("val", "none"),
        default="val",
        help="slides: pick each model's step on validation slides, or keep the last",
    )
    ap.add_argument("--n-val", type=int, default=6, help="slides: validation slides per fold")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--patience", type=int, default=1000, help="slides: early-stop patience")
    ap.add_argument("--min-steps", type=int, default=2000, help="slides: no early stop before")
    ap.add_argument("--slide-shape", type=int, default=384)
    ap.add_argument("--max-bag", type=int, default=64)
    ap.add_argument("--only", default="", help="slides: run just these folds (cached), no report")
    ap.add_argument("--report-cached", action="store_true", help="slides: report cached folds")
    add_device_arg(ap)
    args = ap.parse_args()
    global DEVICE
    DEVICE = device_of(args.device)
    torch.set_num_threads(1)
    seeds = list(range(2 if args.quick else args.seeds))
    parts = args.parts.split(",")
    if not parts or set(parts) - {"digits", "slides"}:
        ap.error(f"--parts: expected digits and/or slides, got {args.parts!r}")
    sections = {}  # part -> (claim rows, body); each part has its own doc section
    if "digits" in parts:
        t_all, body, summary = time.perf_counter(), [], []
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
        sections["digits"] = (summary, body, time.perf_counter() - t_all)
    if "slides" in parts:
        t0 = time.perf_counter()
        shape = (args.slide_shape,) * 2
        n_train, n_test = (10, 6) if args.quick else (20, 10)
        steps = 300 if args.quick else args.slide_steps
        only = [int(v) for v in args.only.split(",")] if args.only else None
        only = [] if args.report_cached else only
        cfg = [n_train, n_test, shape, steps, args.max_bag]
        sel = None
        if args.select == "val":
            sel = {"n_val": 4 if args.quick else args.n_val, "every": 50 if args.quick else
                   args.val_every, "patience": 100 if args.quick else args.patience,
                   "min_steps": 200 if args.quick else args.min_steps}  # fmt: skip
            cfg.append(sel)  # without it the key is that of the runs before selection
        res, folds = [], []
        for f in seeds:
            r = cached_fold(f, only, *cfg, device=DEVICE)
            if r is None:
                continue
            res.append(r)
            folds.append(f)
            scores = {m: {k: v if isinstance(v, list) else round(v, 3)
                          for k, v in r[m].items() if k != "val"} for m in MODELS}  # fmt: skip
            print(f"slides fold {f} ({r['seconds']:.0f} s):", scores, flush=True)
        if args.only:
            print(f"folds {only} done and cached in {CACHE}; --report-cached to report")
            return
        if not res:
            raise SystemExit(f"no cached slide folds in {CACHE} for these settings")
        seeds = folds
        rows, body = slides_report(res, folds, n_train, n_test, shape, steps, args.max_bag, sel)
        secs = sum(r["seconds"] for r in res)  # the folds' own wall times (cached runs too)
        sections["slides"] = (rows, body, secs)
    titles = {
        "digits": (
            "distill-regime",
            "Distill-to-Label in the paper's regime (issue 15)",
        ),
        "slides": (
            "distill-regime-slides",
            "Distill-to-Label, rare-tumour slides (issue 15)",
        ),
    }
    for part, (summary, body, secs) in sections.items():
        text = (
            "Claims as paired differences per seed/fold, 95 % Student-t CI; verdict from the "
            "CI (reproduced: CI > 0; not reproduced: CI < 0; else inconclusive). Paper "
            "numbers: Tables I/II averages (colon / breast) and Fig. 2.\n\n"
            + markdown_table(CLAIM_HEADER, summary)
            + "\n\n"
            + "\n\n".join(body)
            + f"\n\nTotal {secs:.0f} s (wall"
            + (
                "; the folds' own times summed, folds may run in parallel with --only"
                if part == "slides"
                else ""
            )  # fmt: skip
            + f"), 1 torch thread, device {args.device}"
            + (" (--quick)." if args.quick else ".")
        )
        write_section(*titles[part], text)
    from _summary import write_summary

    write_summary()


if __name__ == "__main__":
    main()
