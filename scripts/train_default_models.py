"""Train the default model of each method on the sample study and ship it.

Training set: the sample study (``wsseg demo-data``, seed 0, the ``make run`` study)
grown to ``DEFAULT_TRAIN_COUNTS`` cases by the same generator (its first cases are the
sample study's). Each method trains through the engine (``wsseg train``) with the
settings in ``napari_wsseg.training.defaults.DEFAULT_TRAINING``, is scored with
``wsseg evaluate`` on a held-out study of sample-study size (seed 1), and its version
folder is copied to
``src/napari_wsseg/training/default_models/<method>/``. ``wsseg demo-data`` and
``make run`` install those into the sample study so Explain shows overlays at once.

    .venv/bin/python scripts/train_default_models.py [--methods iagnet,glam,...]

About 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from napari_wsseg.methods import get_method
from napari_wsseg.phantoms.demo import DEMO_COUNTS, DEMO_EXPERT, DEMO_SIZES, make_study
from napari_wsseg.training.defaults import (
    DEFAULT_TRAIN_COUNTS,
    DEFAULT_TRAIN_EXPERT,
    DEFAULT_TRAINING,
    SHIPPED,
)
from napari_wsseg.training.versions import WEIGHTS

MAX_TOTAL_MB = 25.0  # issue 8: the shipped models stay small


def wsseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "napari_wsseg.cli", *args], check=True)


def train_one(method: str, study: Path, runs: Path) -> Path:
    steps, sets = DEFAULT_TRAINING[method]
    cmd = ["train", "--method", method, "--study", str(study), "--out", str(runs / method)]
    if steps:
        cmd += ["--steps", str(steps)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    wsseg(*cmd)
    (vdir,) = sorted((study / "models" / method).glob("v*"))
    return vdir


def ship(method: str, vdir: Path, held_out: Path, seconds: float) -> Path:
    """Copy ``vdir`` to the package, with paths of this machine left out."""
    out = SHIPPED / method
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scores = vdir.parent / f"{vdir.name}-evaluation.json"
    wsseg("evaluate", "--model", str(vdir), "--study", str(held_out), "--out", str(scores))
    info = json.loads((vdir / "info.json").read_text())
    info.pop("run_dir", None)
    info["trained_by"] = "scripts/train_default_models.py"
    modality = get_method(method).modality
    info["trained_on"] = (
        f"the sample study grown to {DEFAULT_TRAIN_COUNTS[modality]} "
        f"{modality} cases (wsseg demo-data generator, seed 0)"
    )
    info["train_seconds"] = round(seconds, 1)
    info["held_out_scores"] = json.loads(scores.read_text())  # seed-1 sample-size study
    job = json.loads((vdir / "job.json").read_text())
    job["study"], job["out"] = "sample_data/study", f"runs/{method}"
    (out / "info.json").write_text(json.dumps(info, indent=1))
    (out / "job.json").write_text(json.dumps(job, indent=1))
    shutil.copyfile(vdir / "metrics.json", out / "metrics.json")
    ood = json.loads((vdir / "ood.json").read_text())  # fitted on its training snapshot
    ood.pop("images", None)  # paths of this machine's temporary study
    (out / "ood.json").write_text(json.dumps(ood, indent=1))
    shutil.copyfile(vdir / WEIGHTS, out / WEIGHTS)
    return out


def rescore(method: str, held_out: Path, work: Path) -> None:
    """The shipped ``method``'s held-out scores again, with today's inference."""
    out = SHIPPED / method
    scores = work / f"{method}-evaluation.json"
    wsseg("evaluate", "--model", str(out), "--study", str(held_out), "--out", str(scores))
    info = json.loads((out / "info.json").read_text())
    info["held_out_scores"] = json.loads(scores.read_text())  # seed-1 sample-size study
    info["held_out_scores"]["model"] = f"default_models/{method} (shipped, rescored)"
    (out / "info.json").write_text(json.dumps(info, indent=1))
    print(f"{method}: held-out scores updated -> {out / 'info.json'}", flush=True)


def write_ood(method: str, study: Path) -> None:
    """The shipped ``method``'s out-of-distribution statistics, fitted on its training
    study made again (same generator and seed) as a training run fits them: the train
    split fits, the validation split sets the cut (``wsseg train``'s split)."""
    from napari_wsseg.training import ood, snapshots
    from napari_wsseg.training.spec import JobSpec

    out = SHIPPED / method
    job = JobSpec.load(out / "job.json")
    modality = get_method(method).modality
    snap = snapshots.take_snapshot(str(study), modality, job.val_fraction, job.seed)
    items = snapshots.method_items(snap, modality, str(study))
    snapshots.split_items(items, job.val_fraction, job.seed)
    fitted_on = f"its training study ({info_line(out)}), made again by {Path(__file__).name}"
    stats = ood.fit_items(items, modality, fitted_on)
    stats.pop("images", None)  # paths of this machine's temporary study
    (out / "ood.json").write_text(json.dumps(stats, indent=1))
    print(f"{method}: {out / 'ood.json'} (cut {stats['cut']:.2f}, {stats['n_fit']} fit)")


def info_line(out: Path) -> str:
    return json.loads((out / "info.json").read_text()).get("trained_on", "?")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(DEFAULT_TRAINING))
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="no training: score the shipped models again on the held-out study (after a "
        "change of inference, e.g. Distill's gated mask) and update their info.json",
    )
    ap.add_argument(
        "--ood",
        action="store_true",
        help="no training: fit the shipped models' out-of-distribution statistics on their "
        "training study (made again) and write their ood.json",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wsseg-defaults-"))
    study, held_out = work / "study", work / "held_out"
    make_study(held_out, DEMO_COUNTS, DEMO_EXPERT, seed=1, sizes=DEMO_SIZES).close()
    if args.ood:
        make_study(study, DEFAULT_TRAIN_COUNTS, DEFAULT_TRAIN_EXPERT, seed=0, sizes=DEMO_SIZES)
        for method in args.methods.split(","):
            write_ood(method, study)
        return
    if args.rescore:
        for method in args.methods.split(","):
            rescore(method, held_out, work)
        return
    make_study(study, DEFAULT_TRAIN_COUNTS, DEFAULT_TRAIN_EXPERT, seed=0, sizes=DEMO_SIZES).close()
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        vdir = train_one(method, study, work / "runs")
        seconds = time.perf_counter() - t0
        out = ship(method, vdir, held_out, seconds)
        mb = (out / WEIGHTS).stat().st_size / 1e6
        print(f"{method}: trained in {seconds:.0f} s, {mb:.1f} MB -> {out}", flush=True)
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) / 1e6
    print(f"shipped default models: {total:.1f} MB in all (limit {MAX_TOTAL_MB} MB)")
    if total > MAX_TOTAL_MB:
        sys.exit(f"default models take {total:.1f} MB, over {MAX_TOTAL_MB} MB")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
