"""``wsseg evaluate | suggest``: score a model version, rank images to annotate."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from napari_wsseg.training.cli import MODEL_HELP, _device


def register(subparsers: Any) -> None:
    """Add ``evaluate`` and ``suggest`` to the ``wsseg`` command line, and held-out
    scoring to ``wsseg train`` (registered before: the floor below cannot score)."""
    from napari_wsseg.evaluation.heldout import score_after_training

    train = subparsers.choices.get("train")
    if train is not None:
        train.set_defaults(on_registered=score_after_training)
    p = subparsers.add_parser("evaluate", help="metrics of a model on a study's ground truth")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--study", required=True)
    p.add_argument("--out", help="metrics JSON (default: print)")
    p.add_argument("--threshold", type=float, help="mask threshold (default: the method's)")
    p.add_argument("--split", help="only images of this split (train / val)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("suggest", help="images to annotate next, most useful first")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--study", required=True)
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--out", help="also write the ranking as JSON")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.set_defaults(func=cmd_suggest)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_wsseg.evaluation.evaluate import evaluate_model
    from napari_wsseg.training.registry import resolve_version

    model = str(resolve_version(args.model, args.study))
    result = _nan_to_none(
        evaluate_model(model, args.study, _device(args.device), args.threshold, args.split)
    )
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"metrics written to {args.out}")
    else:
        print(text)
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from napari_wsseg.evaluation.suggest import suggest
    from napari_wsseg.training.registry import resolve_version

    rows = suggest(
        str(resolve_version(args.model, args.study)), args.study, args.n, _device(args.device)
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:3d}. image {r['image_id']}  score={r['score']:.3f} "
            f"(entropy {r['entropy']:.3f}, disagreement {r['disagreement']:.3f})  {r['path']}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    if not rows:
        print("no images without an expert mask", file=sys.stderr)
    return 0
