"""Out-of-distribution score (training/ood.py): features, fit, cut, storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsseg.io.base import ImageData
from napari_wsseg.training import ood


def _film(rng, shape=(96, 80), level=0.5, noise=0.02):
    img = np.clip(level + noise * rng.standard_normal(shape), 0, 1)
    img[shape[0] // 3 : shape[0] // 2, 10:30] += 0.3  # some structure
    return ImageData(data=(img * 4000).astype(np.uint16), modality="xray", scale=(1.0, 1.0))


def test_features_name_each_value_and_handle_volumes_rgb_and_pyramids():
    rng = np.random.default_rng(0)
    assert len(ood.image_features(_film(rng))) == len(ood.FEATURES)
    vol = ImageData(data=rng.random((9, 32, 32)).astype(np.float32), modality="ct", scale=(1,) * 3)
    rgb = ImageData(
        data=(rng.random((32, 32, 3)) * 255).astype(np.uint8),
        modality="skin",
        scale=(1, 1),
        rgb=True,
    )
    pyramid = ImageData(
        data=[rng.random((64, 64, 3)), rng.random((16, 16, 3))],
        modality="slide",
        scale=(1, 1),
        rgb=True,
        multiscale=True,
    )
    for image in (vol, rgb, pyramid):
        feats = ood.image_features(image)
        assert feats.shape == (len(ood.FEATURES),) and np.isfinite(feats).all()
    hist = ood.image_features(_film(rng))[:8]
    assert hist.sum() == pytest.approx(1.0)


def test_score_is_rms_z_and_the_cut_passes_every_held_out_image():
    stats = {"mean": [0.0, 1.0], "std": [1.0, 2.0]}
    assert ood.score(stats, np.array([3.0, 5.0])) == pytest.approx(np.sqrt((9 + 4) / 2))
    rng = np.random.default_rng(1)
    train = np.array([ood.image_features(_film(rng)) for _ in range(8)])
    held = np.array([ood.image_features(_film(rng)) for _ in range(4)])
    stats = ood.fit(train, held)
    assert stats["cut"] == pytest.approx(ood.MARGIN * max(ood.score(stats, f) for f in held))
    assert stats["cut_from"] == "held-out split"
    # an image of another kind (much noisier, brighter, other size) is flagged
    other = ood.check(stats, _film(rng, shape=(300, 120), level=0.9, noise=0.3))
    same = ood.check(stats, _film(rng))
    assert other["ood"] and other["score"] > stats["cut"] and "unlike" in other["message"]
    assert not same["ood"]
    loo = ood.fit(train, np.empty((0, len(ood.FEATURES))))  # no held-out split
    assert loo["cut_from"].startswith("leave-one-out") and loo["cut"] > 0
    with pytest.raises(ValueError, match="2\\+ training images"):
        ood.fit(train[:1], held)


def test_statistics_are_kept_with_the_version(demo_study, tmp_path):
    version = tmp_path / "v001"
    version.mkdir()
    stats = ood.ensure(version, demo_study.root, "skin")
    assert (version / "ood.json").exists() and stats["modality"] == "skin"
    assert stats["n_fit"] + stats["n_held"] == len(demo_study.images("skin"))
    again = ood.ensure(version, demo_study.root, "skin")  # read back, not refitted
    assert again["cut"] == pytest.approx(stats["cut"]) and again["mean"] == stats["mean"]


SMALL_CT = {"ct": {"shape": (32, 64, 64)}}  # the session demo study's CT size


def test_a_real_ct_is_flagged_against_a_phantom_study(tmp_path):
    """Issue 13: a phantom-trained model on a real image gave no warning (the shipped
    models against the real films: tests/training/test_training_defaults.py)."""
    from pydicom.data import get_testdata_file

    from napari_wsseg.io import read_image
    from napari_wsseg.phantoms.demo import make_study

    study = make_study(tmp_path / "s", {"ct": 16}, {}, seed=3, sizes=SMALL_CT)
    paths = [rec.path for rec in study.images("ct")]
    study.close()
    stats = ood.ensure(tmp_path, study.root, "ct")
    assert stats["n_fit"] >= ood.MIN_FIT
    real = read_image(get_testdata_file("CT_small.dcm", download=False), modality="ct")
    assert ood.check(stats, real)["ood"]
    for path in paths:
        assert not ood.check(stats, read_image(path, modality="ct"))["ood"], path


def test_too_few_training_images_give_no_check():
    """Below MIN_FIT training images the spread means nothing: no verdict either way."""
    rng = np.random.default_rng(2)
    train = np.array([ood.image_features(_film(rng)) for _ in range(ood.MIN_FIT - 1)])
    stats = ood.fit(train, np.empty((0, len(ood.FEATURES))))
    result = ood.check(stats, _film(rng, shape=(300, 120), level=0.9, noise=0.3))
    assert result["ood"] is None and result["short"] == ""
    assert (
        result["message"].startswith("no out-of-distribution check")
        and "4 image" in (result["message"])
    )


def test_pooled_statistics_equal_one_fit_on_both_sets():
    """A fine-tuned version's statistics pool its parent's (n, mean, spread) with its
    run's images: the same mean and ddof-1 spread as a fit on both sets at once; the cut
    is the parent's or MARGIN x the largest score of the run's own images."""
    rng = np.random.default_rng(3)
    a = rng.normal(1.0, 0.5, (7, len(ood.FEATURES)))
    b = rng.normal(1.3, 0.8, (3, len(ood.FEATURES)))
    held = rng.normal(1.0, 0.5, (2, len(ood.FEATURES)))
    parent = ood.fit(a, held)
    pooled = ood.pool(parent, b, held[:1])
    both = np.vstack([a, b])
    assert np.allclose(pooled["mean"], both.mean(axis=0))
    assert np.allclose(pooled["std"], both.std(axis=0, ddof=1))
    assert pooled["n_fit"] == 10 and pooled["n_held"] == 1
    own = max(ood.score(pooled, f) for f in np.vstack([b, held[:1]]))
    assert pooled["cut"] == pytest.approx(max(parent["cut"], ood.MARGIN * own))
    # hand check on one feature: parent n=2 of {0, 2} (mean 1, sd sqrt 2), run {4}
    tiny = {"n_fit": 2, "mean": [1.0], "std": [2**0.5], "cut": 1.0}
    ood_pool = ood.pool(tiny, np.array([[4.0]]), np.empty((0, 1)))
    assert ood_pool["mean"] == pytest.approx([2.0]) and ood_pool["std"] == pytest.approx([2.0])


def test_a_training_run_keeps_the_statistics_of_what_it_learnt_from(demo_study, tmp_path):
    """The version's ood.json is fitted at registration on its run's snapshot (train
    split fits, the rest sets the cut), not on the study later: the statistics Explain
    reads are those, whatever joins the study after."""
    import json
    import shutil

    from tiny_sets import TINY

    from napari_wsseg.cli import main

    root = Path(shutil.copytree(demo_study.root, tmp_path / "study"))
    run = tmp_path / "run"
    args = ["train", "--method", "manifold", "--study", str(root), "--out", str(run)]
    args += ["--steps", "1", "--val-fraction", "0.25"]
    for key, value in TINY["manifold"].items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    (version,) = (root / "models" / "manifold").glob("v*")
    stats = ood.load(version)
    assert stats is not None and stats["modality"] == "skin"
    assert str(run / "snapshot.json") in stats["fitted_on"]
    items = json.loads((run / "snapshot.json").read_text())["items"]
    assert stats["n_fit"] + stats["n_held"] == len(items)  # the snapshot's skin images
    assert stats["n_fit"] == sum(1 for it in items if it["split"] == "train") > 0
    assert ood.ensure(version, tmp_path / "no-such-study", "skin") == stats  # kept
    # a fine-tuned version learnt from its parent's images too: the two are pooled
    again = [a for a in args if a != str(run)]
    again[again.index("--out") + 1 : again.index("--out") + 1] = [str(tmp_path / "run2")]
    assert main([*again, "--parent", "current"]) == 0
    child = ood.load(root / "models" / "manifold" / "v002")
    assert child is not None and "pooled with those of its parent v001" in child["fitted_on"]
    # the same images: each counted once, so the statistics are the parent's
    assert child["n_fit"] == stats["n_fit"] and child["images"] == stats["images"]
    assert child["mean"] == pytest.approx(stats["mean"]) and child["cut"] >= stats["cut"]


def test_a_version_without_statistics_is_fitted_on_its_runs_snapshot(demo_study, tmp_path):
    """A version made before ood.json was kept with it: fitted on the snapshot of its
    run (the images it learnt from), not on the study's images now; with the run gone,
    on the study."""
    import json

    from napari_wsseg.study.store import Study

    with Study.open(demo_study.root) as study:
        snap = study.snapshot(modality="xray")
    first = snap.items[:3]
    snap.items = first
    run = tmp_path / "run"
    run.mkdir()
    snap.save(run / "snapshot.json")
    version = tmp_path / "v001"
    version.mkdir()
    (version / "info.json").write_text(json.dumps({"run_dir": str(run)}))
    stats = ood.ensure(version, tmp_path / "no-such-study", "xray")
    assert stats["n_fit"] + stats["n_held"] == 3 and "snapshot of its run" in stats["fitted_on"]
    assert ood.load(version) == stats  # stored with the version
    other = tmp_path / "v002"  # its run folder is gone: the study's xray images now
    other.mkdir()
    (other / "info.json").write_text(json.dumps({"run_dir": str(tmp_path / "gone")}))
    stats = ood.ensure(other, demo_study.root, "xray")
    assert stats["n_fit"] + stats["n_held"] == len(demo_study.images("xray"))
    assert stats["fitted_on"] == "the study's images at its first use"


@pytest.mark.parametrize(
    "change",
    [
        {"mean": [0.0, 1.0]},  # wrong length
        {"std": [0.0] * len(ood.FEATURES)},  # zero spread: division by zero
        {"n_fit": "many"},
        {"cut": "nan"},
        {"cut": -1.0},
        {"version": 99},
        {"n_fit": 0},
        {"images": {"a": 1}},
        {"images": [1, 2]},
    ],
)
def test_a_crafted_statistics_file_is_not_trusted(demo_study, tmp_path, change):
    """An ood.json that is not what this module writes is refitted, not read (a crafted
    version folder must not break Explain or silence the warning)."""
    import json

    good = ood.ensure(tmp_path, demo_study.root, "skin")
    ood.path_of(tmp_path).write_text(json.dumps({**good, **change}))
    assert ood.load(tmp_path) is None
    assert ood.ensure(tmp_path, demo_study.root, "skin")["mean"] == good["mean"]
    ood.path_of(tmp_path).write_text("[1, 2]")
    assert ood.load(tmp_path) is None
