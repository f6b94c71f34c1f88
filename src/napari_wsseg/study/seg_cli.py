"""``wsseg seg export`` and ``wsseg seg import``: mask versions as DICOM SEG and back."""

from __future__ import annotations

import argparse

from napari_wsseg.study.store import Study


def run_export(args: argparse.Namespace) -> int:
    from napari_wsseg.study.dicom_seg import export_seg

    with Study.open(args.study) as study:
        if args.version is None:
            study.image(args.image)  # KeyError naming the id if it is not there
            version = study.latest_accepted_mask(args.image)
            if version is None:
                raise KeyError(f"image {args.image} has no accepted mask version to export")
            version_id = version.id
        else:
            version_id = args.version
        out = export_seg(study, version_id, args.out)
    print(f"wrote mask version {version_id} as DICOM SEG {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from napari_wsseg.study.dicom_seg import import_seg

    with Study.open(args.study) as study:
        for path in args.seg:
            vid = import_seg(study, path, image_id=args.image, author=args.author)
            v = study.mask_version(vid)
            print(f"{path}: mask version {vid} (v{v.version}, {v.source}) of image {v.image_id}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``seg export`` / ``seg import`` to the ``wsseg`` command line."""
    p = subparsers.add_parser("seg", help="DICOM SEG: export mask versions, import SEGs")
    sub = p.add_subparsers(dest="seg_command", required=True)
    e = sub.add_parser("export", help="write a mask version as a DICOM SEG file")
    e.add_argument("study")
    e.add_argument("out", help="the SEG file to write")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=int, help="mask version id")
    which.add_argument("--image", type=int, help="image id: its newest accepted version")
    e.set_defaults(func=run_export)
    i = sub.add_parser("import", help="store DICOM SEG files as mask versions")
    i.add_argument("study")
    i.add_argument("seg", nargs="+", help="SEG file(s)")
    i.add_argument("--image", type=int, default=None, help="image id (default: by series)")
    i.add_argument("--author", default=None, help="author (default: the SEG's creator)")
    i.set_defaults(func=run_import)
