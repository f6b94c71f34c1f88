"""``wsseg study-import`` and ``wsseg study-info``."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from napari_wsseg.study.catalog import CATALOG
from napari_wsseg.study.store import Study


def run_import(args: argparse.Namespace) -> int:
    root = Path(args.study)
    study = Study.open(root) if (root / CATALOG).exists() else Study.create(root)
    with study:
        ids = study.import_csv(args.csv, base_dir=args.base_dir)
    print(f"imported {len(ids)} image(s) into {root}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    with Study.open(args.study) as study:
        records = study.images()
        print(f"study {study.root}: {len(records)} image(s)")
        by_mod = Counter(r.modality for r in records)
        for modality, n in sorted(by_mod.items()):
            recs = [r for r in records if r.modality == modality]
            status = Counter(r.mask_status for r in recs)
            pos = sum(any(v > 0 for v in r.labels.values()) for r in recs)
            print(
                f"  {modality:6s} {n:4d} images, {pos} with a positive label, masks: "
                + ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
            )
        problems = study.check()
        print("integrity: ok" if not problems else "integrity problems:")
        for p in problems:
            print(f"  - {p}")
    return 1 if problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the study commands to the ``wsseg`` command line."""
    p = subparsers.add_parser("study-import", help="import images and labels from a CSV")
    p.add_argument("study", help="study folder (created if it holds no study)")
    p.add_argument(
        "csv", help="CSV with columns path, modality, optional series, and one per label"
    )
    p.add_argument("--base-dir", default=None, help="folder relative paths start from")
    p.set_defaults(func=run_import)
    p = subparsers.add_parser("study-info", help="summarise a study and check its integrity")
    p.add_argument("study")
    p.set_defaults(func=run_info)
