"""Two mask writers, an importer and ``check(clean=True)`` in a loop, at once, on one
study: every acknowledged save keeps its file and row, nobody sees an error, and the
cleaner never reports (let alone removes) a file a writer is about to commit.

The run lasts ``WSSEG_STRESS_S`` seconds (default 10; docs/study.md reports a 60 s run).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_wsseg.phantoms.demo import make_phantom, make_study
from napari_wsseg.study import Study
from napari_wsseg.study.records import sha256_of

DURATION_S = float(os.environ.get("WSSEG_STRESS_S", "10"))


def _run(role: str, root: str, out: str, deadline: float, arg: str) -> None:
    log = Path(out) / f"{role}.log"
    try:
        with Study.open(root) as study, open(log, "a") as fh:
            rng = np.random.default_rng(abs(hash(role)) % 2**32)
            ids = [r.id for r in study.images("skin")]
            n = 0
            while time.time() < deadline:
                if role == "clean":
                    for problem in study.check(clean=True):
                        fh.write(f"problem {problem}\n")
                    fh.write(f"round {n}\n")
                elif role == "import":
                    image_id = study.add_image(arg, "skin", labels={"nevus": n % 2})
                    fh.write(f"image {image_id}\n")
                else:
                    image_id = ids[n % len(ids)]
                    mask = (rng.random((32, 32)) > 0.5).astype(np.uint8)
                    vid = study.save_mask(image_id, mask, "corrected", author=role)
                    fh.write(f"mask {vid}\n")
                fh.flush()
                n += 1
    except BaseException:
        (Path(out) / f"{role}.error").write_text(traceback.format_exc())
        raise


def test_reliability_writers_import_and_clean_run_together(tmp_path):
    root = tmp_path / "s"
    make_study(root, {"skin": 3}, {}, sizes={"skin": (32, 32)}).close()
    png = tmp_path / "incoming.png"
    iio.imwrite(png, make_phantom("skin", 5, shape=(32, 32)).image, extension=".png")
    deadline = time.time() + DURATION_S
    ctx = mp.get_context("fork")
    roles = ("writer-a", "writer-b", "import", "clean")
    procs = [
        ctx.Process(target=_run, args=(r, str(root), str(tmp_path), deadline, str(png)))
        for r in roles
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(DURATION_S + 120)
    errors = {p.name: p.read_text() for p in tmp_path.glob("*.error")}
    assert errors == {}
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    logs = {r: (tmp_path / f"{r}.log").read_text().splitlines() for r in roles}
    assert [x for x in logs["clean"] if x.startswith("problem")] == []
    assert len(logs["clean"]) >= 3  # the cleaner is not starved by the writers
    with Study.open(root) as study:
        saved = [int(x.split()[1]) for r in ("writer-a", "writer-b") for x in logs[r]]
        assert len(saved) >= 10
        for vid in saved:  # every acknowledged save: its row, and its file unchanged
            v = study.mask_version(vid)
            assert v.path.is_file() and sha256_of(v.path) == v.sha256
        imported = [int(x.split()[1]) for x in logs["import"]]
        assert imported and all(study.image(i).path.is_file() for i in imported)
        assert study.check() == []
