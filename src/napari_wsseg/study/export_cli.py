"""``wsseg export``: a study as a MONAI datalist or an nnU-Net raw dataset."""

from __future__ import annotations

import argparse

from napari_wsseg.study.store import Study


def run_export(args: argparse.Namespace) -> int:
    from napari_wsseg.study.export import export_monai, export_nnunet

    with Study.open(args.study) as study:
        if args.format == "monai":
            out = export_monai(study, args.out, args.modality, args.val_fraction, args.seed)
        else:
            if args.modality is None:
                raise ValueError("--format nnunet needs --modality (ct, mammo or skin)")
            out = export_nnunet(study, args.out, args.modality, args.dataset_id, args.name)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``wsseg`` command line."""
    p = subparsers.add_parser("export", help="write a MONAI datalist or an nnU-Net dataset")
    p.add_argument("study")
    p.add_argument("out", help="monai: the .json to write; nnunet: the nnUNet_raw folder")
    p.add_argument("--format", choices=("monai", "nnunet"), default="monai")
    p.add_argument("--modality", default=None, help="one task (default for monai: all)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="monai validation share")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-id", type=int, default=501, help="nnU-Net DatasetXXX id")
    p.add_argument("--name", default="", help="nnU-Net dataset name (default: study folder)")
    p.set_defaults(func=run_export)
