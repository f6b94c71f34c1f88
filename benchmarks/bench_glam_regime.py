"""GLAM in the paper's regime (issue 15): separately trained S_g, S_l, S_c vs joint S_c.

The paper's Tables 1/2 compare S_c against S_g and S_l of modules trained on their
own, and GMIC-like S_g against CAM. Here one run per seed snapshots the model after
each stage, which is the same thing: after ``global`` (S_g alone), after ``local``
(S_l of a local module trained on the frozen global one, and their S_c) and after
``joint`` (the jointly fine-tuned S_c). Each stage keeps the step of best validation
soft Dice (App. F selects checkpoints by validation Dice). Lesions vary around the
64 px patch (``make_case(radius_range=...)``: radius 2-12 % of the 368 px height =
7-44 px, diameters 15-88 px), so S_g's hedge against lesions larger than a patch is
exercised. 3 seeds (new phantoms and weights), paired differences with 95 % t-CIs.

    .venv/bin/python benchmarks/bench_glam_regime.py [--quick] [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import add_device_arg, device_of  # noqa: E402
from _report import markdown_table, write_section  # noqa: E402
from _stats import CLAIM_HEADER, claim_row, fmt_ci  # noqa: E402
from bench_glam import BENCH, SIZE, tensors, up  # noqa: E402

from napari_wsseg import metrics  # noqa: E402
from napari_wsseg.methods.glam.method import GLAMConfig, GLAMMethod  # noqa: E402
from napari_wsseg.phantoms.mammo import make_case  # noqa: E402

RADIUS = (0.02, 0.12)
CLASSES = ("malignant", "benign")


def make_data(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [make_case(rng, None, shape=SIZE, radius_range=RADIUS) for _ in range(n)]


def soft_dice(model, cases, x, key: str) -> dict[str, list[float]]:
    """Per class: App. E soft Dice of map ``key`` on the images holding that class."""
    out = {c: [] for c in CLASSES}
    model.eval()
    with torch.inference_mode():
        for i, case in enumerate(cases):
            if not case.mask.any():
                continue
            s = up(model.infer(x[i : i + 1])[key][0])
            for ci, c in enumerate(CLASSES):
                if (case.mask == ci + 1).any():
                    out[c].append(metrics.dice_soft(s[ci], case.mask == ci + 1))
    return out


def train(method, x, y, steps: dict, seed: int, val, val_every: int, keys: dict) -> dict:
    """The stages in order; after each, the model at its best validation step."""
    torch.manual_seed(seed)
    model = method.build_model().to(x.device)  # where the data is (--device)
    gen = torch.Generator().manual_seed(seed)
    snaps = {}
    for stage in method.stages():
        opt = torch.optim.Adam(method.trainable(model, stage), lr=stage.lr)
        key = keys[stage.name]
        best, best_state = -1.0, copy.deepcopy(model.state_dict())
        for step in range(1, steps[stage.name] + 1):
            model.train()
            idx = torch.randint(0, len(x), (stage.batch_size,), generator=gen)
            out = method.training_step(model, {"image": x[idx], "label": y[idx]}, stage)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            if step % val_every == 0 or step == steps[stage.name]:
                d = soft_dice(model, *val, key)
                score = float(np.mean([v for c in CLASSES for v in d[c]]))
                if score > best:
                    best, best_state = score, copy.deepcopy(model.state_dict())
        model.load_state_dict(best_state)
        snaps[stage.name] = copy.deepcopy(model).eval()
        print(f"  {stage.name}: best val soft Dice ({key}) {best:.3f}", flush=True)
    return snaps


def run_seed(seed: int, n_train: int, n_val: int, n_test: int, steps: dict, every: int, dev="cpu"):
    train_c, val_c, test_c = (make_data(n, 1000 * seed + k) for n, k in
                              ((n_train, 0), (n_val, 1), (n_test, 2)))  # fmt: skip
    (xtr, ytr), (xva, _), (xte, _) = (tuple(t.to(dev) for t in tensors(c))
                                      for c in (train_c, val_c, test_c))  # fmt: skip
    keys = {"global": "s_g", "local": "s_l", "joint": "s_c"}
    glam = train(GLAMMethod(GLAMConfig(**BENCH)), xtr, ytr, steps, seed, (val_c, xva), every, keys)
    cam = train(GLAMMethod(GLAMConfig(**BENCH, cam=True)), xtr, ytr, steps, seed, (val_c, xva),
                every, {"global": "s_g"})["global"]  # fmt: skip
    scores = {
        "CAM": soft_dice(cam, test_c, xte, "s_g"),
        "S_g (global alone)": soft_dice(glam["global"], test_c, xte, "s_g"),
        "S_l (global + local)": soft_dice(glam["local"], test_c, xte, "s_l"),
        "S_c (global + local)": soft_dice(glam["local"], test_c, xte, "s_c"),
        "S_c (joint)": soft_dice(glam["joint"], test_c, xte, "s_c"),
    }
    big = [max(les["radius_px"] for les in c.meta["lesions"]) * 2 > BENCH["patch_size"]
           for c in test_c if c.meta["lesions"]]  # fmt: skip
    print(f"seed {seed}:", {k: {c: round(float(np.mean(v[c])), 3) for c in CLASSES}
                            for k, v in scores.items()}, flush=True)  # fmt: skip
    return scores, float(np.mean(big)), {c: len(scores["CAM"][c]) for c in CLASSES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    add_device_arg(ap)
    args = ap.parse_args()
    dev = device_of(args.device)
    torch.set_num_threads(1)
    if args.quick:
        n_train, n_val, n_test, every = 32, 12, 16, 50
        steps = {"global": 150, "local": 60, "joint": 20}
    else:
        n_train, n_val, n_test, every = 200, 30, 120, 100
        steps = {"global": 800, "local": 300, "joint": 100}
    seeds = list(range(2 if args.quick else args.seeds))
    t0 = time.perf_counter()
    runs = [run_seed(s, n_train, n_val, n_test, steps, every, dev) for s in seeds]
    names = list(runs[0][0])
    rows = []
    for c in CLASSES:
        for m in names:
            rows.append([c, m, fmt_ci([float(np.mean(r[0][m][c])) for r in runs], 3)])
    regime = f"mammo 368x240, lesion diam. 15-88 px vs 64 px patch, {len(seeds)} seeds"
    claims = []
    for c in CLASSES:

        def gap(a: str, b: str, c: str = c) -> list[float]:
            return [float(np.mean(r[0][a][c]) - np.mean(r[0][b][c])) for r in runs]

        claims += [
            claim_row(f"{c}: S_c > S_g (separate)", "S_c best (Table 1)",
                      gap("S_c (global + local)", "S_g (global alone)"), regime),
            claim_row(f"{c}: S_c > S_l (separate)", "S_c best (Table 1)",
                      gap("S_c (global + local)", "S_l (global + local)"), regime),
            claim_row(f"{c}: joint S_c > separate S_c", "joint helps (Sec. 3.3)",
                      gap("S_c (joint)", "S_c (global + local)"), regime),
            claim_row(f"{c}: S_g > CAM", "GMIC-like S_g > CAM (Table 1)",
                      gap("S_g (global alone)", "CAM"), regime),
        ]  # fmt: skip
    pos = runs[0][2]
    body = (
        f"Mammogram phantoms at {SIZE[0]}x{SIZE[1]}, lesion radius {RADIUS[0]:.0%}-"
        f"{RADIUS[1]:.0%} of the height (7-44 px; {np.mean([r[1] for r in runs]):.0%} of "
        f"test images hold a lesion wider than the 64 px patch). {n_train} training, "
        f"{n_val} validation (checkpoint = best validation soft Dice every {every} steps, "
        f"per stage), {n_test} test images ({pos['malignant']} malignant / {pos['benign']} "
        f"benign positives in seed 0). Steps (batch 4): global {steps['global']}, local "
        f"{steps['local']}, joint {steps['joint']}; CAM {steps['global']}. Config as the "
        f"`glam` section. Soft Dice (App. E) per class on the images holding it, mean "
        f"[95 % CI] over {len(seeds)} seeds.\n\n"
        + markdown_table(["class", "map", "soft Dice"], rows)
        + "\n\n"
        + markdown_table(CLAIM_HEADER, claims)
        + f"\n\nTotal {time.perf_counter() - t0:.0f} s (wall), 1 thread, device {args.device}"
        + (" (--quick)." if args.quick else ".")
    )
    write_section("glam-regime", "GLAM in the paper's regime (issue 15)", body)
    from _summary import write_summary

    write_summary()


if __name__ == "__main__":
    main()
