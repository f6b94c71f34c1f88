"""``wsseg``: the command line. Each floor registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that define ``register(subparsers)``; each adds its commands.
COMMAND_MODULES = (
    "napari_wsseg.study.cli",
    "napari_wsseg.study.seg_cli",
    "napari_wsseg.study.pacs_cli",
    "napari_wsseg.study.export_cli",
    "napari_wsseg.training.demo_cli",
    "napari_wsseg.training.cli",
    "napari_wsseg.evaluation.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsseg", description="Weakly supervised segmentation: data, training, inference."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wsseg`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, KeyError) as err:
        print(f"wsseg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
