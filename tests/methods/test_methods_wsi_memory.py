"""A 16k x 16k slide predicts under an address-space limit smaller than its level 0.

The slide (``phantoms.wsi``, 16384 px square, ~6 % tissue so the model part stays
short on a shared CPU) is generated once in a tmp dir (~5 s). Its level 0 is 805 MB
of pixels; the subprocess runs ``wsseg predict`` under ``RLIMIT_AS`` = 1.5 GiB, of
which importing torch already takes ~680 MB of address space, so decoding the level
whole (or holding its tissue tiles) cannot fit. It also checks the peak RSS (VmHWM).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_wsseg.phantoms.wsi import write_wsi

LIMIT = int(1.5 * 2**30)
MODEL = (
    Path(__file__).parents[2] / "src" / "napari_wsseg" / "training" / "default_models" / "distill"
)

SCRIPT = """
import resource, sys, json
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from napari_wsseg.cli import main
rc = main(["predict", sys.argv[1], "--model", sys.argv[2], "--out", sys.argv[3]])
# VmHWM: this image's own peak. ru_maxrss is not: a child started by vfork + exec
# inherits the parent's high-water mark (1 GB when pytest has run other tests first)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
rss = int(hwm.split()[1]) / 1024
print(json.dumps({{"rc": rc, "rss_mb": rss}}))
"""


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wsi16k") / "s16k.ome.tif"
    write_wsi(path, (16384, 16384), seed=0, tissue=0.04, tumour=0.1, bank=2)
    return path


def test_wsseg_predict_on_a_16k_slide_under_a_memory_limit(big_slide, tmp_path):
    # 2 torch threads: predict runs its 2 model threads (the default on a 2-core machine)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(limit=LIMIT), str(big_slide), str(MODEL), str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and got["rss_mb"] < 900, got
    probs = json.loads((out / "probabilities.json").read_text())
    assert 0.0 <= probs[str(big_slide)]["tumor"] <= 1.0
    # the bar went to stderr (not a terminal: one line per 10 %), ending "done in"
    bar = [line for line in res.stderr.splitlines() if "tiles/s" in line]
    assert len(bar) >= 3 and "done in" in bar[-1] and "100%" in bar[-1]
