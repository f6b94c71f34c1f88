"""Study store: import, labels, immutable mask versions, snapshots, integrity checks."""

from __future__ import annotations

import os
import sqlite3

import imageio.v3 as iio
import numpy as np
import pytest

from napari_wsseg.phantoms.demo import make_phantom, make_study
from napari_wsseg.study import Snapshot, Study
from napari_wsseg.study.records import sha256_of


@pytest.fixture
def small(tmp_path):
    with make_study(tmp_path / "s", {"skin": 2, "xray": 1}, {"skin": 1}) as study:
        yield study


def _png(path, seed=0):
    iio.imwrite(path, make_phantom("skin", seed, shape=(32, 32)).image, extension=".png")
    return path


def test_study_open_errors(tmp_path, small):
    with pytest.raises(FileNotFoundError, match="not a study"):
        Study.open(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such study"):
        Study.open(tmp_path / "nope")
    with pytest.raises(FileExistsError):
        Study.create(small.root)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "catalog.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises((ValueError, sqlite3.DatabaseError)):
        Study.open(tmp_path / "bad")
    with Study.open(small.root) as again:
        assert len(again.images()) == 3
        assert again.query("PRAGMA journal_mode")[0][0] == "wal"


def test_study_add_image_copies_and_refuses_escape(tmp_path, small):
    outside = _png(tmp_path / "outside.png")
    image_id = small.add_image(outside, "skin", labels={"nevus": 1, "melanoma": 0})
    rec = small.image(image_id)
    assert rec.relpath.startswith("images/skin/") and rec.path.is_file()
    assert rec.sha256 == sha256_of(outside) and rec.labels == {"nevus": 1.0, "melanoma": 0.0}
    assert rec.meta["shape"] == [32, 32] and rec.mask_status == "none"
    # same name again: copied under a new name, never over the first file
    second = small.add_image(outside, "skin")
    assert small.image(second).relpath != rec.relpath
    with pytest.raises(ValueError, match="outside the study"):
        small.add_image(outside, "skin", copy=False)
    link = small.root / "images" / "skin" / "link.png"
    link.symlink_to(outside)
    with pytest.raises(ValueError, match="outside the study"):
        small.add_image(link, "skin", copy=False)
    with pytest.raises(ValueError, match="already in the study"):
        small.add_image(rec.path, "skin", copy=False)
    with pytest.raises(ValueError, match="unknown label 'pdac'"):
        small.add_image(outside, "skin", labels={"pdac": 1})
    with pytest.raises(ValueError, match="unknown modality"):
        small.add_image(outside, "ultrasound")
    with pytest.raises(FileNotFoundError):
        small.add_image(tmp_path / "missing.png", "skin")


def test_study_mask_versions_never_overwritten(small):
    rec = small.images("skin")[1]
    assert rec.mask_status == "none"
    ref = small.reference_mask(rec.id)
    truth = small.load_mask(ref.id)
    pred = small.save_mask(rec.id, truth * 0, "predicted", model_version="m1")
    assert small.image(rec.id).mask_status == "predicted"
    fixed = truth.copy()
    fixed[:4] = 1
    corr = small.save_mask(rec.id, fixed, "corrected", author="dr. a", parent=pred)
    versions = small.mask_versions(rec.id)
    assert [v.version for v in versions] == [1, 2, 3]
    assert [v.source for v in versions] == ["reference", "predicted", "corrected"]
    assert len({v.path for v in versions}) == 3 and all(v.path.exists() for v in versions)
    v3 = versions[2]
    assert (v3.author, v3.parent, versions[1].model_version) == ("dr. a", pred, "m1")
    assert v3.created.endswith("Z") and v3.path.name == "v3.tif"
    assert small.latest_accepted_mask(rec.id).id == corr
    assert small.image(rec.id).mask_status == "corrected"  # the browser tells them apart
    expert = small.save_mask(rec.id, fixed, source="expert", author="dr. b")
    assert small.image(rec.id).mask_status == "expert"  # the newest accepted version's
    assert small.latest_accepted_mask(rec.id).id == expert
    assert np.array_equal(small.load_mask(corr), fixed)
    assert np.array_equal(small.load_mask(ref.id), truth)  # earlier version untouched
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        small.query("UPDATE masks SET author = 'x' WHERE id = ?", (corr,))
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        small.query("DELETE FROM masks WHERE id = ?", (corr,))
    other = small.images("skin")[0].id
    with pytest.raises(ValueError, match="not a version of image"):
        small.save_mask(other, truth, "corrected", parent=corr)
    with pytest.raises(ValueError, match="source"):
        small.save_mask(rec.id, truth, "guess")
    with pytest.raises(ValueError, match="shape"):
        small.save_mask(rec.id, truth[:10], "expert")
    xray = small.images("xray")[0]
    with pytest.raises(ValueError, match="shape"):
        small.save_mask(xray.id, np.zeros((256, 256), np.uint8), "expert")
    assert small.check() == []


def test_study_set_labels_and_validation(small):
    rec = small.images("xray")[0]
    small.set_labels(rec.id, {"edema": 1, "pneumothorax": None})
    labels = small.image(rec.id).labels
    assert labels["edema"] == 1.0 and "pneumothorax" not in labels
    with pytest.raises(ValueError, match="unknown label 'tumor'"):
        small.set_labels(rec.id, {"tumor": 1})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        small.set_labels(rec.id, {"edema": 3})
    with pytest.raises(KeyError, match="no image with id 999"):
        small.set_labels(999, {"edema": 1})


def test_study_snapshot_frozen_and_deterministic(small, tmp_path):
    snap = small.snapshot(val_fraction=0.5, seed=1)
    assert snap.created and len(snap.items) == 3
    again = small.snapshot(val_fraction=0.5, seed=1)
    assert [i.split for i in snap.items] == [i.split for i in again.items]
    by_id = {i.image_id: i for i in snap.items}
    for rec in small.images():
        item = by_id[rec.id]
        acc = small.latest_accepted_mask(rec.id)
        assert item.mask == (str(acc.path) if acc else None)
        assert item.reference_mask == str(small.reference_mask(rec.id).path)
        assert item.labels == rec.labels and item.path == str(rec.path)
    assert [i.modality for i in small.snapshot("skin").items] == ["skin", "skin"]
    path = tmp_path / "snap.json"
    snap.save(path)
    expert_item = next(i for i in snap.items if i.mask)
    before = sha256_of(expert_item.mask)
    # later edits: a corrected mask and a label change
    new = small.save_mask(expert_item.image_id, np.ones((128, 128), np.uint8), "corrected")
    name = next(iter(expert_item.labels))
    small.set_labels(expert_item.image_id, {name: 1 - expert_item.labels[name]})
    loaded = Snapshot.load(path)
    assert loaded.to_json() == snap.to_json()
    assert sha256_of(loaded.by_modality("skin")[0].mask or expert_item.mask) == before
    now = {i.image_id: i for i in small.snapshot().items}[expert_item.image_id]
    assert now.mask_version == new and now.labels != expert_item.labels


def test_study_check_reports_and_cleans(small):
    rec = small.images("skin")[0]
    ref = small.reference_mask(rec.id)
    orphan = ref.path.parent / "v9.tif"
    orphan.write_bytes(b"x")
    tmp = ref.path.parent / ".v10.abc.tmp.tif"
    tmp.write_bytes(b"y")
    problems = small.check()
    assert any("orphan mask file" in p and "v9.tif" in p for p in problems)
    assert any("temporary file" in p for p in problems)
    # the next version skips past the orphan instead of overwriting it
    vid = small.save_mask(rec.id, small.load_mask(ref.id), "expert")
    assert small.mask_version(vid).version == 10
    assert orphan.read_bytes() == b"x"
    small.check(clean=True)
    assert not orphan.exists() and not tmp.exists()
    os.chmod(ref.path, 0o644)
    ref.path.write_bytes(ref.path.read_bytes() + b"\0")
    assert any("hash mismatch" in p for p in small.check())
