"""``wsseg demo-data``: write a demo study made of phantoms."""

from __future__ import annotations

import argparse
import time

from napari_wsseg.phantoms.demo import DEMO_COUNTS, DEMO_EXPERT, DEMO_SIZES, make_study


def parse_counts(text: str) -> dict[str, int]:
    """Parse ``ct=4,mammo=3`` into a dict; ValueError naming the bad item."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--counts: expected modality=N, got {item!r}")
        out[name.strip()] = int(value)
    return out


def run_demo_data(args: argparse.Namespace) -> int:
    counts = parse_counts(args.counts) if args.counts else dict(DEMO_COUNTS)
    expert = parse_counts(args.expert) if args.expert else dict(DEMO_EXPERT)
    sizes = None if args.full_size else DEMO_SIZES
    start = time.perf_counter()
    with make_study(args.out_dir, counts, expert, seed=args.seed, sizes=sizes) as study:
        n = len(study.images())
    print(f"wrote {n} images to study {args.out_dir} in {time.perf_counter() - start:.1f} s")
    if not args.no_models:
        from napari_wsseg.training.defaults import install_default_models

        made = install_default_models(args.out_dir)
        print(
            f"installed {len(made)} default model versions: "
            + ", ".join(p.parent.name for p in made)
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo-data`` to the ``wsseg`` command line."""
    p = subparsers.add_parser("demo-data", help="write a demo study of phantom images")
    p.add_argument("out_dir", help="folder of the new study (must not hold one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--counts", default="", help="e.g. ct=4,mammo=3,slide=3,xray=6,skin=6")
    p.add_argument("--expert", default="", help="expert masks per modality, e.g. ct=1,xray=2")
    p.add_argument(
        "--full-size",
        action="store_true",
        help="default phantom sizes (2944x1920 mammograms, 2048^2 slides)",
    )
    p.add_argument(
        "--no-models",
        action="store_true",
        help="leave out the default model versions shipped with the package",
    )
    p.set_defaults(func=run_demo_data)
