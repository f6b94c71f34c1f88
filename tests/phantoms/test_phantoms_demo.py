"""Demo study writer, pyramid writer, CLI and sample data."""

from __future__ import annotations

import numpy as np
import tifffile

from napari_wsseg.cli import main
from napari_wsseg.io import read_image, read_mask
from napari_wsseg.phantoms.demo import make_phantom, make_study
from napari_wsseg.phantoms.slide import write_pyramid
from napari_wsseg.study import Study


def test_phantoms_demo_study_contents(demo_study):
    recs = demo_study.images()
    counts = {
        m: sum(r.modality == m for r in recs) for m in ("ct", "mammo", "slide", "xray", "skin")
    }
    assert counts == {"ct": 2, "mammo": 2, "slide": 2, "xray": 4, "skin": 4}
    for rec in recs:
        ref = demo_study.reference_mask(rec.id)
        assert ref is not None and ref.source == "reference"
        mask = demo_study.load_mask(ref.id)
        # the catalog labels agree with the stored ground truth
        if rec.modality in ("ct", "slide"):
            assert bool(mask.any()) == bool(max(rec.labels.values()))
    experts = {
        m: [r for r in recs if r.modality == m and r.mask_status == "expert"] for m in counts
    }
    assert {m: len(v) for m, v in experts.items()} == {
        "ct": 1,
        "mammo": 1,
        "slide": 1,
        "xray": 2,
        "skin": 2,
    }
    for rec in experts["ct"] + experts["slide"]:
        assert demo_study.load_mask(demo_study.latest_accepted_mask(rec.id).id).any()
    ct = [r for r in recs if r.modality == "ct"][0]
    img = read_image(ct.path)
    assert np.allclose(img.scale, (2.5, 0.8, 0.8))
    expected = make_phantom("ct", 0, 0, shape=(32, 64, 64))
    assert np.array_equal(np.asarray(img.data), expected.image)
    assert np.array_equal(read_mask(demo_study.reference_mask(ct.id).path), expected.mask)


def test_phantoms_demo_deterministic(tmp_path):
    counts, sizes = {"ct": 1, "skin": 2}, {"ct": {"shape": (16, 48, 48)}}
    with (
        make_study(tmp_path / "a", counts, {"skin": 1}, seed=3, sizes=sizes) as a,
        make_study(tmp_path / "b", counts, {"skin": 1}, seed=3, sizes=sizes) as b,
    ):
        ra, rb = a.images(), b.images()
        # NIfTI gzip headers hold no time stamp from nibabel, PNGs none either
        assert [r.labels for r in ra] == [r.labels for r in rb]
        for x, y in zip(ra, rb):
            assert np.array_equal(
                np.asarray(read_image(x.path).data), np.asarray(read_image(y.path).data)
            )


def test_phantoms_write_pyramid_levels(tmp_path):
    img = make_phantom("slide", 0, shape=(512, 512)).image
    path = write_pyramid(tmp_path / "s.tif", img, tile=128, levels=3, mpp=0.5, compression="zlib")
    with tifffile.TiffFile(path) as tf:
        levels = tf.series[0].levels
        assert [lv.shape for lv in levels] == [(512, 512, 3), (256, 256, 3), (128, 128, 3)]
        assert tf.pages[0].is_tiled and tf.pages[0].tilewidth == 128
        assert np.array_equal(levels[0].asarray(), img)  # zlib is lossless
        xres = tf.pages[0].tags["XResolution"].value
        assert abs(1e4 / (xres[0] / xres[1]) - 0.5) < 1e-6
    data = read_image(path, "slide")
    assert data.multiscale and data.rgb and len(data.data) == 3


def test_phantoms_cli_demo_data(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["demo-data", str(out), "--counts", "xray=2,skin=1", "--expert", "xray=1"]) == 0
    with Study.open(out) as s:
        assert len(s.images()) == 3
    assert main(["study-info", str(out)]) == 0
    assert "integrity: ok" in capsys.readouterr().out
    assert main(["demo-data", str(tmp_path / "x"), "--counts", "ct=two"]) == 2


def test_phantoms_sample_data_layers():
    from napari_wsseg import _sample_data as sd

    for fn in (sd.sample_ct, sd.sample_xray, sd.sample_skin, sd.sample_slide):
        (img, img_kw, kind), (lab, lab_kw, lkind) = fn()
        assert kind == "image" and lkind == "labels"
        assert lab.any() and lab.dtype == np.uint8
        shape = img[0].shape if img_kw.get("multiscale") else img.shape
        assert tuple(shape[: lab.ndim]) == lab.shape
