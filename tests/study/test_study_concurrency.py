"""Two processes on one study; a writer killed with SIGKILL loses nothing committed."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np

from napari_wsseg.phantoms.demo import make_study
from napari_wsseg.study import Study
from napari_wsseg.study.records import sha256_of


def _pattern(i: int, shape=(128, 128)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[(i * 7) % shape[0] :, : (i * 13) % shape[1] + 1] = 1
    return mask


def _writer(root: str, tag: str, n: int) -> None:
    with Study.open(root) as study:
        ids = [r.id for r in study.images("skin")]
        for i in range(n):
            image_id = ids[i % len(ids)]
            study.save_mask(image_id, _pattern(i), "corrected", author=f"{tag}{i}")
            study.set_labels(image_id, {"nevus": i % 2})
            study.images()  # readers interleave with the other writer


def test_study_two_processes_write_concurrently(tmp_path):
    make_study(tmp_path / "s", {"skin": 2}, {}).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "s"), tag, 15)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]  # no 'database is locked' anywhere
    with Study.open(tmp_path / "s") as study:
        for rec in study.images():
            versions = study.mask_versions(rec.id)
            assert [v.version for v in versions] == list(range(1, len(versions) + 1))
        authors = [v.author for r in study.images() for v in study.mask_versions(r.id)]
        assert sorted(a for a in authors if a[0] in "ab") == sorted(
            f"{t}{i}" for t in "ab" for i in range(15)
        )
        for r in study.images():
            for v in study.mask_versions(r.id):
                if v.source == "corrected":
                    assert np.array_equal(study.load_mask(v.id), _pattern(int(v.author[1:])))
        assert study.check() == []


def test_study_sigkill_mid_save_keeps_committed_versions(tmp_path):
    root = tmp_path / "s"
    make_study(root, {"skin": 3}, {}).close()
    ctx = mp.get_context("spawn")
    child = ctx.Process(target=_writer, args=(str(root), "k", 10_000))
    child.start()
    with Study.open(root) as watcher:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = watcher.query("SELECT COUNT(*) FROM masks WHERE source = 'corrected'")[0][0]
            if n >= 12:
                break
            time.sleep(0.01)
        before = {v.id: v.sha256 for r in watcher.images() for v in watcher.mask_versions(r.id)}
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    assert sum(1 for _ in before) >= 12 + 3

    with Study.open(root) as study:
        assert study.query("PRAGMA integrity_check") == [("ok",)]
        after = {v.id: v for r in study.images() for v in study.mask_versions(r.id)}
        assert set(before) <= set(after)  # every version seen before the kill survives
        for vid, v in after.items():
            assert sha256_of(v.path) == v.sha256
            if vid in before:
                assert v.sha256 == before[vid]
            if v.source == "corrected":
                assert np.array_equal(study.load_mask(vid), _pattern(int(v.author[1:])))
        # at most an orphan/temporary file of the interrupted save is left; clean it
        leftovers = study.check(clean=True)
        assert all("orphan" in p or "temporary" in p for p in leftovers)
        assert len(leftovers) <= 2
        assert study.check() == []
        rec = study.images()[0]
        vid = study.save_mask(rec.id, _pattern(1), "expert")
        assert (
            study.mask_version(vid).version
            == max(v.version for v in after.values() if v.image_id == rec.id) + 1
        )
