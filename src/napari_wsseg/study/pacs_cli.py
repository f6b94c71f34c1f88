"""``wsseg pacs search | retrieve | store``: a DICOMweb PACS from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_wsseg.study.store import CATALOG, Study


def _pacs(args: argparse.Namespace):
    from napari_wsseg.io.pacs import Pacs, load_config

    return Pacs(load_config(args.server, args.config))


def _bar(label: str):
    """A one-line text progress bar on stderr: ``progress(done, total)``."""

    def progress(done: int, total: int) -> None:
        filled = int(30 * done / max(total, 1))
        end = "\n" if done >= total else ""
        print(
            f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return progress


def run_search(args: argparse.Namespace) -> int:
    hits = _pacs(args).search(
        args.patient, args.accession, args.modality, args.date, args.patient_name, args.limit
    )
    for h in hits:
        print(
            f"{h.patient_id}\t{h.accession}\t{h.study_date}\t{h.modality}\t"
            f"{h.n_instances if h.n_instances is not None else '?'}\t{h.description}\t"
            f"{h.series_uid}"
        )
    print(f"{len(hits)} series", file=sys.stderr)
    return 0


def _parse_labels(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--label {pair!r}: expected name=value")
        out[name] = float(value)
    return out


def run_retrieve(args: argparse.Namespace) -> int:
    from napari_wsseg.study.pacs_import import (
        MODALITY_OF,
        labels_for_hit,
        labels_from_csv,
        retrieve_into_study,
    )

    pacs = _pacs(args)
    root = Path(args.study)
    study = Study.open(root) if (root / CATALOG).exists() else Study.create(root)
    with study:
        for uid in args.series:
            hit = pacs.series(uid)
            labels = _parse_labels(args.label)
            if args.labels_csv:
                mod = args.modality or MODALITY_OF.get(hit.modality.upper(), "ct")
                labels = {**labels_for_hit(labels_from_csv(args.labels_csv, mod), hit), **labels}
            image_id = retrieve_into_study(
                study,
                pacs,
                hit,
                args.modality,
                labels,
                _bar(f"series {hit.series_number} {hit.modality}"),
            )
            print(f"series {uid}: image {image_id}")
    return 0


def run_store(args: argparse.Namespace) -> int:
    pacs = _pacs(args)
    if args.study is not None:
        from napari_wsseg.study.pacs_import import store_seg

        with Study.open(args.study) as study:
            for vid in args.version:
                print(f"mask version {vid}: stored as SOP {store_seg(study, pacs, vid)}")
    for uid, path in zip(pacs.store(args.files), args.files):
        print(f"{path}: stored as SOP {uid}")
    return 0


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server", default=None, help="server name in the config (default: its default)"
    )
    p.add_argument(
        "--config", default=None, help="config file (default: ~/.config/napari-wsseg/config.yaml)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pacs search / retrieve / store`` to the ``wsseg`` command line."""
    p = subparsers.add_parser("pacs", help="search, retrieve from and store to a DICOMweb PACS")
    sub = p.add_subparsers(dest="pacs_command", required=True)
    s = sub.add_parser("search", help="find series (QIDO-RS)")
    s.add_argument("--patient", help="PatientID (wildcards * allowed)")
    s.add_argument("--patient-name", default=None)
    s.add_argument("--accession", help="AccessionNumber")
    s.add_argument("--modality", help="CT, MG, CR, DX, ...")
    s.add_argument("--date", help="StudyDate YYYYMMDD or a range A-B")
    s.add_argument("--limit", type=int, default=200)
    _server_args(s)
    s.set_defaults(func=run_search)
    r = sub.add_parser("retrieve", help="retrieve series into a study (WADO-RS)")
    r.add_argument("study", help="study folder (created if it holds no study)")
    r.add_argument("series", nargs="+", help="SeriesInstanceUID(s)")
    r.add_argument("--modality", default=None, help="study modality (default: from DICOM)")
    r.add_argument("--label", action="append", default=[], help="label=value, repeatable")
    r.add_argument(
        "--labels-csv",
        default=None,
        help="CSV with series_uid or accession and one column per label",
    )
    _server_args(r)
    r.set_defaults(func=run_retrieve)
    t = sub.add_parser("store", help="send DICOM SEG files or mask versions (STOW-RS)")
    t.add_argument("files", nargs="*", help="DICOM files to send")
    t.add_argument("--study", default=None, help="study holding --version mask versions")
    t.add_argument("--version", type=int, action="append", default=[], help="mask version id")
    _server_args(t)
    t.set_defaults(func=run_store)
