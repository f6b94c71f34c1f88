"""The correction loop, simulated: does fixing a few masks give a better segmenter back?

Per method, on a phantom study drawn with a seed no test or shipped model uses
(``STUDY_SEED + seed``): a held-out set is marked (never trained on), the shipped
default is installed as v001 and scored, then for ``--rounds`` rounds an annotator
picks k cases (k = 2 for 2D, 1 for CT) either by ``suggest`` (uncertainty of the
current version) or at random, stores their ground-truth masks as expert masks, and
the quick retrain (``presets.fine_tune_spec``: the previous round's version as
parent, the stages the masks change) makes the next version, scored on the held-out
set. Reports held-out Dice per round for both rules (mean over seeds, 95% CI from
the t distribution), wall time per round, and a plot.

    OMP_NUM_THREADS=1 python benchmarks/bench_loop.py --methods manifold --rounds 4 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

from napari_wsseg.evaluation.heldout import score_after_training, score_version  # noqa: E402
from napari_wsseg.evaluation.suggest import rank_items  # noqa: E402
from napari_wsseg.io import read_mask  # noqa: E402
from napari_wsseg.methods import METHOD_MODALITY  # noqa: E402
from napari_wsseg.phantoms.demo import DEMO_SIZES, make_study  # noqa: E402
from napari_wsseg.study import heldout  # noqa: E402
from napari_wsseg.study.store import Study  # noqa: E402
from napari_wsseg.training import runner  # noqa: E402
from napari_wsseg.training.defaults import install_default_models  # noqa: E402
from napari_wsseg.training.presets import fine_tune_spec  # noqa: E402
from napari_wsseg.training.registry import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STUDY_SEED = 7_300  # tests use 0 and small seeds, the shipped defaults 0
# (cases in the pool the annotator picks from, held-out cases, picks a round)
SIZES = {
    "manifold": (14, 6, 2),
    "chexseg": (14, 6, 2),
    "glam": (10, 4, 2),
    "distill": (8, 9, 2),  # 9 held out (was 3: a normal slide scores 0 or 1, a third of the mean)
    "iagnet": (6, 3, 1),
}
RESULTS = ROOT / "benchmarks" / "results" / "bench_loop.json"
# What the numbers of the 2026-12-02 run say (read from the tables, rerun -> reread).
FINDINGS = """**Findings (2026-12-02; 4 rounds; 2 seeds, n = 2 per cell, 3 for Distill: the 95%
CIs are wide and no difference between the rules is significant).**

- Held-out Dice after the last round, mean over the seeds (v001 -> suggest / random):
  manifold 0.32 -> 0.74 / 0.71, CheXseg 0.41 -> 0.44 / 0.47, GLAM 0.74 -> 0.84 / 0.86,
  IAG-Net 0.76 -> 0.78 / 0.79, Distill (3 seeds, 9 held-out slides) 0.924 -> 0.926 /
  0.928. Goal "above v001 on every method": met on all five on the mean; **Distill's
  gain is not significant** (last round minus v001, paired over the 3 seeds: suggest
  +0.002 +- 0.028, random +0.004 +- 0.011; seed 2 / suggest ends 0.010 below).
- Distill, rerun with 9 held-out slides (was 3; the pool stays 8) and the slide mask
  gated by the slide's label (`gate_mask`, docs/methods/distill.md). With 3 held-out
  slides a normal slide's Dice (1 or 0) was a third of the mean, and five of six
  sequences had ended 0.003-0.009 below v001. With 9 and no gate the fine-tunes were
  clearly worse, not noise: v001 0.850 -> 0.739 / 0.741 after four rounds (seed 2 /
  suggest 0.714 -> 0.491): the quick fine-tunes lift a few background tiles over 0.5
  on slides the student itself calls normal. The gate (an empty mask on a slide
  whose bag probability is < 0.5, by the MIL assumption) lifts v001 too (0.850 ->
  0.924, scored the same way) and keeps every fine-tune at v001's level or just above.
  v001 is within ~0.01 of this phantom's tile-resolution ceiling (exact hard tile
  labels: 0.935 on seed 0's first held-out set), so eight corrected slides have little
  left to add. The parent guard (its Dice now on the gated mask too) kept the parent
  in none of the 24 rounds.
- IAG-Net: quick fine-tune at lr 1e-5 and the parent guard. The lesion-free first
  correction of seed 0 / random no longer collapses the held-out Dice (0.89 -> 0.90;
  the guard kept the parent in 3 of 4 rounds, so that sequence never improves), and
  seed 1, which the lr was not chosen on, ends above v001 with both rules (0.63 ->
  0.66 / 0.68). The guard kept the parent in 5 of 12 checked rounds. Its round 1 of
  seed 0 / random, rerun after the guard's fallback was added, gave 0.9005 again
  (the fallback never triggers there: an unseen case is always left).
- Uncertainty vs random: suggest is below random at the end on CheXseg, GLAM,
  Distill and IAG-Net, above on manifold; all within the CIs.
- Wall time per round on this shared 2-core machine (1-min load average 5.5-10 at
  the rounds' ends; other engineers' jobs included): 2D methods median 31-80 s, max
  140 s (goal < 3 min: met); CT median 93 s, max 141 s (goal < 6 min: met). Distill's
  rerun: two processes (one per rule) on a quiet machine, 14-19 s a round.
- What ran: Distill seeds 0-2 with 9 held-out slides and the gate (two processes,
  merged);
  CheXseg, GLAM, IAG-Net from the earlier run this session; manifold's rows are the
  previous run's (2026-12-02, before the guard, which manifold does not use: its code
  path is unchanged, and the seed-0 rerun reproduced it to 3 decimals).
"""
PLOT = ROOT / "docs" / "images" / "loop_dice.png"


def build_study(root: Path, method: str, seed: int) -> tuple[Study, list[int]]:
    """Phantom study of the method's modality; the last cases are marked held-out."""
    modality = METHOD_MODALITY[method]
    pool, held, _k = SIZES[method]
    study = make_study(root, {modality: pool + held}, {}, seed=STUDY_SEED + seed, sizes=DEMO_SIZES)
    ids = [r.id for r in study.images(modality)]
    heldout.mark(study, ids[pool:])
    install_default_models(root, [method])
    return study, ids[:pool]


def pick(rule: str, study: Study, method: str, version: Path, pool: list[int], k: int, rng):
    """The k cases the annotator corrects next, and the seconds the choice took."""
    t0 = time.perf_counter()
    todo = [i for i in pool if study.latest_accepted_mask(i) is None]
    if rule == "random":
        chosen = [int(i) for i in rng.choice(todo, size=min(k, len(todo)), replace=False)]
    else:
        m, model = load_model(version)
        items = [it for it in study.snapshot(modality=m.modality).items if it.image_id in todo]
        with torch.inference_mode():
            chosen = [int(r["image_id"]) for r in rank_items(m, model, items, k)]
    return chosen, time.perf_counter() - t0


def correct(study: Study, ids: list[int]) -> None:
    """The expert's corrections: each case's ground truth stored as an expert mask."""
    for i in ids:
        ref = study.reference_mask(i)
        study.save_mask(i, read_mask(ref.path), source="expert", author="bench_loop")


def run_sequence(method: str, seed: int, rule: str, rounds: int, work: Path) -> dict:
    """One annotator: v001, then ``rounds`` correct-and-retrain rounds."""
    root = work / f"{method}-{seed}-{rule}"
    study, pool = build_study(root, method, seed)
    k = SIZES[method][2]
    rng = np.random.default_rng(1000 + seed)
    version = root / "models" / method / "v001"
    dice = [score_version(version, root)["summary"]["dice"]]
    rows = []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        chosen, t_pick = pick(rule, study, method, version, pool, k, rng)
        correct(study, chosen)
        spec = fine_tune_spec(version, root / "runs" / f"r{r}", str(root), "quick", seed=seed)
        result = runner.train(spec, on_registered=score_after_training)
        version = result.version_dir
        d = json.loads((version / "held_out.json").read_text())["summary"]["dice"]
        dice.append(d)
        rows.append({"round": r, "picked": chosen, "dice": d, "pick_s": t_pick,
                     "wall_s": time.perf_counter() - t0, "load1": os.getloadavg()[0],
                     **_guard(result.run_dir)})  # fmt: skip
        print(f"{method} seed {seed} {rule} round {r}: picked {chosen} dice {d:.4f} "
              f"({rows[-1]['wall_s']:.0f} s)", flush=True)  # fmt: skip
    study.close()
    return {"method": method, "seed": seed, "rule": rule, "k": k, "dice": dice, "rounds": rows}


def _guard(run_dir: Path) -> dict:
    """What the job's parent guard did: ``kept_parent`` (None: no guard ran or nothing
    to check) and ``guard_cases`` (``unseen`` or ``seen_by_both``, see training/guard.py)."""
    for line in (run_dir / "progress.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev.get("event") == "guard":
            if not ev.get("checked"):
                return {"kept_parent": None, "guard_cases": None}
            return {"kept_parent": bool(ev.get("kept_parent")),
                    "guard_cases": ev.get("cases", "unseen")}  # fmt: skip
    return {"kept_parent": None, "guard_cases": None}


def _ci(values: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (t distribution; 0 for one value)."""
    v = np.asarray([x for x in values if x is not None], float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), 0.0
    from scipy import stats

    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def report(runs: list[dict]) -> str:
    """Markdown of the results, and the plot."""
    methods = sorted({r["method"] for r in runs}, key=list(SIZES).index)
    lines = []
    for m in methods:
        mine = [r for r in runs if r["method"] == m]
        n_rounds = min(len(r["dice"]) for r in mine) - 1
        seeds = sorted({r["seed"] for r in mine})
        header = ["masks corrected"] + [f"Dice, {rule}" for rule in ("suggest", "random")]
        rows = []
        for j in range(n_rounds + 1):
            row: list[object] = [j * mine[0]["k"]]
            for rule in ("suggest", "random"):
                vals = [r["dice"][j] for r in mine if r["rule"] == rule]
                mu, hw = _ci(vals)
                row.append(f"{mu:.3f} ± {hw:.3f} (n={len(vals)})" if vals else "-")
            rows.append(row)
        walls = [x["wall_s"] for r in mine for x in r["rounds"]]
        loads = [x["load1"] for r in mine for x in r["rounds"] if "load1" in x]
        kept = [x.get("kept_parent") for r in mine for x in r["rounds"]]
        fallback = [x.get("kept_parent") for r in mine for x in r["rounds"]
                    if x.get("guard_cases") == "seen_by_both"]  # fmt: skip
        lines.append(f"### {m} ({METHOD_MODALITY[m]}), seeds {seeds}, k = {mine[0]['k']}\n")
        lines.append(markdown_table(header, rows))
        last = {rule: [r["dice"][n_rounds] for r in mine if r["rule"] == rule]
                for rule in ("suggest", "random")}  # fmt: skip
        v001 = float(np.mean([r["dice"][0] for r in mine]))
        ok = all(np.mean(v) > v001 for v in last.values() if v)
        lines.append(
            f"\nRound 0 is the shipped v001. Wall time per round (pick + retrain + held-out "
            f"scoring): median {np.median(walls):.0f} s, max {np.max(walls):.0f} s over "
            f"{len(walls)} rounds"
            + (f" (1-min load average at the rounds' ends: median {np.median(loads):.1f}, "
               f"max {np.max(loads):.1f})" if loads else "")
            + f". Parent guard kept the parent in {sum(k is True for k in kept)} of "
            f"{sum(k is not None for k in kept)} checked rounds (none: no guard)"
            + (f", {sum(k is True for k in fallback)} of them among the {len(fallback)} "
               "checked on the cases both versions trained on (no unseen case left)"
               if fallback else "")
            + ". "
            f"Dice after round {n_rounds} above v001's (mean over seeds, each rule): "
            f"{'yes' if ok else 'no'}.\n"
        )  # fmt: skip
    _plot(runs, methods)
    return "\n".join(lines)


def _plot(runs: list[dict], methods: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods), 3.0), squeeze=False)
    for ax, m in zip(axes[0], methods):
        mine = [r for r in runs if r["method"] == m]
        n = min(len(r["dice"]) for r in mine)
        x = np.arange(n) * mine[0]["k"]
        for rule, color in (("suggest", "tab:red"), ("random", "tab:blue")):
            d = np.array([r["dice"][:n] for r in mine if r["rule"] == rule], float)
            if len(d):
                ax.plot(x, d.mean(0), "-o", color=color, label=rule, ms=3)
                if len(d) > 1:
                    ax.fill_between(x, d.min(0), d.max(0), color=color, alpha=0.15)
        ax.set_title(f"{m} ({METHOD_MODALITY[m]})", fontsize=9)
        ax.set_xlabel("corrected masks", fontsize=8)
        ax.set_ylabel("held-out Dice", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(SIZES))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed-list", default="", help="run these seeds (e.g. 1) instead")
    p.add_argument("--rules", default="suggest,random")
    p.add_argument("--quick", action="store_true", help="manifold only, 2 rounds, 1 seed")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from JSON")
    p.add_argument("--results", type=Path, default=RESULTS, help="results JSON (appended)")
    p.add_argument("--merge", type=Path, nargs="*", default=[], help="more results JSONs")
    args = p.parse_args(argv)
    if args.quick:
        args.methods, args.rounds, args.seeds = "manifold", 2, 1
    torch.set_num_threads(1)
    runs = json.loads(args.results.read_text()) if args.results.exists() else []
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="wsseg-loop-") as tmp:
            for method in args.methods.split(","):
                seeds = [int(x) for x in args.seed_list.split(",") if x.strip()]
                for seed in seeds or range(args.seeds):
                    for rule in args.rules.split(","):
                        res = run_sequence(method, seed, rule, args.rounds, Path(tmp))
                        runs = [r for r in runs if (r["method"], r["seed"], r["rule"])
                                != (method, seed, rule)] + [res]  # fmt: skip
                        args.results.parent.mkdir(parents=True, exist_ok=True)
                        args.results.write_text(json.dumps(runs, indent=1))
    for extra in args.merge:  # sequences run by another process (another --results)
        keys = {(r["method"], r["seed"], r["rule"]) for r in json.loads(extra.read_text())}
        runs = [r for r in runs if (r["method"], r["seed"], r["rule"]) not in keys]
        runs += json.loads(extra.read_text())
    if args.merge:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(runs, indent=1))  # the merged rows are kept
    body = (
        "Simulated annotator (`benchmarks/bench_loop.py`): phantom study seed "
        f"{STUDY_SEED}+seed, pool / held-out / picks per round = "
        + ", ".join(f"{m} {a}/{b}/{c}" for m, (a, b, c) in SIZES.items())
        + "; quick retrain from the previous round's version (docs/training.md). "
        "Dice = mean hard Dice over mask classes on the held-out set. The CPU is shared "
        "by several engineers: wall times are upper bounds.\n\n"
        + report(runs)
        + "\n![Dice vs corrected masks](images/loop_dice.png)\n\n"
        "(plot: lines are the mean over seeds, bands span min to max.)\n\n" + FINDINGS
    )
    write_section("loop", "Correction loop: held-out Dice vs corrected masks", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
