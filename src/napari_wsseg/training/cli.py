"""``wsseg train | methods | models | predict``.

``train`` exits 0 when the job finished, 3 when it was stopped (SIGTERM) after
writing a checkpoint; ``wsseg train --resume RUN_DIR`` continues it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

EXIT_CANCELLED = 3


def register(subparsers: Any) -> None:
    """Add the training commands to the ``wsseg`` parser."""
    p = subparsers.add_parser("train", help="run a training job (from a job file or flags)")
    p.add_argument("job", nargs="?", help="job file (JSON or YAML)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped job")
    p.add_argument("--method", help="registered method name (see `wsseg methods`)")
    p.add_argument("--study", help="study folder (snapshot taken at launch)")
    p.add_argument("--snapshot", help="train on this snapshot JSON instead of a fresh one")
    p.add_argument("--out", help="run folder (job.json, snapshot.json, progress, checkpoint)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"))
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, help="steps of every stage")
    p.add_argument("--epochs", type=int, help="epochs of every stage (instead of steps)")
    p.add_argument("--val-fraction", type=float)
    p.add_argument(
        "--parent",
        help="fine-tune this model version (folder, version name like v001, or 'current'):"
        " its config is kept, only steps / learning rates may change",
    )
    p.add_argument(
        "--preset",
        choices=("quick", "paper"),
        help="quick: minutes on a laptop CPU; paper: the paper's config (a GPU). With "
        "--parent: the stages new masks change, for a few steps (quick) or the paper's count",
    )
    p.add_argument(
        "--stages", help="comma-separated stages to run (others are kept from the parent)"
    )
    p.add_argument(
        "--auto-promote",
        action="store_true",
        help="make the new version current if it is not worse on the held-out set",
    )
    p.add_argument("--no-register", action="store_true", help="do not add a model version")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("methods", help="list methods, config keys and defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)

    p = subparsers.add_parser("models", help="list a study's model versions")
    p.add_argument("study")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--install-defaults",
        action="store_true",
        help="first copy the shipped default model of each method the study lacks",
    )
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("predict", help="run a model version on image files")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image file, DICOM series folder, or folder of image files",
    )
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--study", help="the study whose versions --model names (METHOD, METHOD/vNNN)")
    p.add_argument("--out", required=True)
    p.add_argument("--modality", help="override the modality guess of the reader")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.set_defaults(func=cmd_predict)


MODEL_HELP = (
    "model version: a version folder, or with --study METHOD (its current version), "
    "METHOD/vNNN or METHOD:vNNN, as `wsseg models` lists them"
)


def _device(name: str) -> str:
    from napari_wsseg.training.distributed import resolve_device

    return str(resolve_device(name))


def spec_from_args(args: argparse.Namespace):
    """A JobSpec from a job file and/or flags (flags override the file)."""
    from napari_wsseg.methods import get_method
    from napari_wsseg.training.configs import parse_sets
    from napari_wsseg.training.spec import JobSpec

    if args.job:
        spec = JobSpec.load(args.job)
    else:
        missing = [f for f in ("method", "out") if not getattr(args, f)]
        if missing or not (args.study or args.snapshot):
            raise ValueError(
                "train needs a job file, or --method, --study (or --snapshot) and --out"
            )
        spec = JobSpec(method=args.method, out=args.out)
    for flag, key in (
        ("method", "method"),
        ("out", "out"),
        ("study", "study"),
        ("snapshot", "snapshot"),
        ("device", "device"),
        ("seed", "seed"),
        ("steps", "steps"),
        ("epochs", "epochs"),
        ("val_fraction", "val_fraction"),
        ("parent", "parent"),
    ):
        value = getattr(args, flag)
        if value is not None:
            setattr(spec, key, value)
    if args.snapshot:
        spec.snapshot = str(Path(args.snapshot).resolve())
    if args.no_register:
        spec.register = False
    if args.sets:
        cls = get_method(spec.method)
        spec.config = {**spec.config, **parse_sets(cls.Config, args.sets)}
    if getattr(args, "auto_promote", False):
        spec.auto_promote = True
    _apply_plan(spec, getattr(args, "preset", None), getattr(args, "stages", None))
    spec.__post_init__()
    return spec


def _apply_plan(spec, preset: str | None, stages: str | None) -> None:
    """``--preset`` / ``--stages``: config and steps per stage (flags the user gave win)."""
    from napari_wsseg.training import presets

    if not preset and not stages:
        presets.apply_parent(spec)
        return
    preset = preset or "quick"
    spec.preset = preset
    run = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    if spec.parent:
        given = set(spec.config)
        presets.apply_parent(spec)
        if preset == "paper":  # the paper's steps and rates where --set gave none
            paper = presets.paper_defaults(spec.method)
            for k in presets.training_keys(spec.config):
                if k in paper and k not in given:
                    spec.config[k] = paper[k]
        else:  # quick: its learning rates, and the parent guard (training/guard.py)
            quick = presets.QUICK_LR.get(spec.method, {})
            spec.config.update({k: v for k, v in quick.items() if k not in given})
            spec.guard = spec.method in presets.GUARD_METHODS
    elif preset == "quick" and not spec.config:
        sets, steps = presets.scratch_config(spec.method, preset)
        from napari_wsseg.methods import get_method
        from napari_wsseg.training.configs import parse_sets

        cls = get_method(spec.method)
        spec.config = parse_sets(cls.Config, [f"{k}={v}" for k, v in sets.items()])
        if steps and spec.steps is None:
            spec.steps = steps
    names = presets.stage_names(spec.method, spec.config)
    plan = presets.stage_plan(spec.method, names, preset, bool(spec.parent), run, spec.config)
    if spec.steps is not None:  # --steps: the length of every stage that runs
        plan = {k: (int(spec.steps) if v else 0) for k, v in plan.items()}
    spec.stage_steps = {**plan, **spec.stage_steps}


def cmd_train(args: argparse.Namespace) -> int:
    # the evaluation floor sets this default: score the new version on the held-out set
    hook = getattr(args, "on_registered", None)
    if args.resume:
        from napari_wsseg.training import runner

        result = runner.resume(args.resume, on_registered=hook)
    else:
        spec = spec_from_args(args)
        main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 writes
        if main_rank and not (spec.run_dir / "job.json").exists():
            # before torch is imported: a job killed in its first moments can resume
            spec.run_dir.mkdir(parents=True, exist_ok=True)
            spec.save(spec.run_dir / "job.json")
        from napari_wsseg.training import runner

        if main_rank:
            runner.prepare_run(spec)  # job.json + snapshot.json first, then run
        result = runner.train(spec, on_registered=hook)
    where = f", model {result.version_dir}" if result.version_dir else ""
    print(f"{result.status} at step {result.global_step} ({result.run_dir}){where}")
    return 0 if result.status == "done" else EXIT_CANCELLED


def cmd_methods(args: argparse.Namespace) -> int:
    from napari_wsseg.methods import METHOD_MODALITY, available_methods, get_method
    from napari_wsseg.methods.base import config_fields

    table = {}
    for name in available_methods():
        cls = get_method(name)
        fields = {
            k: list(v) if isinstance(v, tuple) else v for k, v in config_fields(cls.Config).items()
        }
        table[name] = {
            "modality": METHOD_MODALITY.get(name, getattr(cls, "modality", "")),
            "config": fields,
        }
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    for name, entry in table.items():
        print(f"{name} ({entry['modality']})")
        for key, value in entry["config"].items():
            print(f"  {key} = {value!r}")
    return 0


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else str(v)


def cmd_models(args: argparse.Namespace) -> int:
    from napari_wsseg.training.registry import scan_models

    if args.install_defaults:
        from napari_wsseg.training.defaults import install_default_models

        for vdir in install_default_models(args.study):
            print(f"installed default model {vdir.parent.name}/{vdir.name}", file=sys.stderr)
    rows, problems = scan_models(args.study)
    for line in problems:  # one bad folder never hides the others
        print(f"wsseg models: skipped {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no model versions in {args.study}")
    from napari_wsseg.training.promotion import current_version

    for r in rows:
        flat = {k: v for k, v in r["metrics"].items() if isinstance(v, int | float)}
        metrics = " ".join(f"{k}={_fmt(v)}" for k, v in list(flat.items())[:6])
        parent = Path(r["parent"]).name if r["parent"] else "-"
        held = _held_out_dice(Path(r["path"]))
        mark = " (current)" if current_version(Path(r["path"]).parent) == r["version"] else ""
        print(
            f"{r['method']}/{r['version']}{mark}  {r['created']}  parent={parent}  "
            f"held-out dice={held}  {metrics}".rstrip()
        )


def _held_out_dice(vdir: Path) -> str:
    """The version's held-out Dice on the study (``held_out.json``); until it is scored
    there, a shipped default's score on its own held-out set (``info.json``
    ``held_out_scores``, as the Explain dock shows it) marked ``(shipped)``; else ``-``."""
    try:
        return _fmt(json.loads((vdir / "held_out.json").read_text())["summary"]["dice"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        seg = json.loads((vdir / "info.json").read_text())["held_out_scores"]["segmentation"]
        dice = [v["dice_hard"] for v in seg.values() if isinstance(v.get("dice_hard"), float)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "-"
    # the mean hard Dice over mask classes, as evaluation.heldout.summary
    return f"{_fmt(sum(dice) / len(dice))} (shipped)" if dice else "-"
    return 0


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Predict's inputs, with each folder that is not a DICOM series opened up.

    A DICOM series folder (``io.has_dicom_files``: DICOM files directly inside) stays
    one volume; any other folder gives its readable image files and DICOM
    sub-folders (``io.can_read``: DICOM files somewhere under them, e.g. a CD export),
    in name order. A folder with none of them is an error naming it.
    """
    from napari_wsseg.io import ImageReadError, can_read, has_dicom_files

    out: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.is_dir() or has_dicom_files(path):
            out.append(path)  # a file (read_image reports its problems) or a DICOM series
            continue
        found = [p for p in sorted(path.iterdir()) if not p.name.startswith(".") and can_read(p)]
        if not found:
            raise ImageReadError(
                path,
                "folder holds no readable image (DICOM series, DICOM, NIfTI, TIFF, PNG "
                "or JPEG files; sub-folders without DICOM files in them are not searched)",
            )
        out += found
    return out


def _ood_check(vdir, study, modality: str, image, path) -> dict:
    """The out-of-distribution check of one input (issue 13), warned on stderr."""
    from napari_wsseg.training import ood

    try:
        report = ood.check(ood.ensure(vdir, study, modality), image)
    except (OSError, ValueError) as err:
        report = {"ood": None, "message": f"no out-of-distribution check ({err})"}
    if report["ood"]:
        print(f"WARNING {path}: {report['message']}", file=sys.stderr)
    return {k: report.get(k) for k in ("ood", "score", "cut", "message")}


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from napari_wsseg.io import read_image
    from napari_wsseg.methods.progress import reporting
    from napari_wsseg.training.outputs import case_name, write_case
    from napari_wsseg.training.progress_bar import ProgressBar
    from napari_wsseg.training.registry import load_model, resolve_version

    inputs = expand_inputs(args.inputs)  # before loading the model: bad inputs fail fast
    vdir = resolve_version(args.model, args.study)
    method, model = load_model(vdir, device=_device(args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    summary = {}
    for path in inputs:
        image = read_image(path, modality=args.modality)
        bar = ProgressBar(str(path))  # drawn by streaming predictors (whole slides)
        with torch.inference_mode(), reporting(bar):
            maps = method.predict(model, image)
        bar.close()
        name = case_name(path, taken)
        summary[str(path)] = {"folder": name, **write_case(out / name, maps, image)}
        print(f"{path}: {', '.join(f'{k}={v:.3f}' for k, v in maps.probabilities.items())}")
        summary[str(path)]["ood"] = _ood_check(vdir, args.study, method.modality, image, path)
    probs = {k: v["probabilities"] for k, v in summary.items()}
    (out / "probabilities.json").write_text(json.dumps(probs, indent=1))
    (out / "outputs.json").write_text(json.dumps(summary, indent=1))
    return 0
