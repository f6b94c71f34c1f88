"""Whole-slide streaming: thumbnail tissue, chunk plan, reader threads, progress, cancel."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from napari_wsseg.io import open_slide, slide_levels
from napari_wsseg.io.slide_tiles import tile_reader
from napari_wsseg.methods.distill.method import DistillConfig
from napari_wsseg.methods.distill.nets import DistillModel
from napari_wsseg.methods.distill.predict import predict_slide
from napari_wsseg.methods.progress import Progress, reporting
from napari_wsseg.methods.streaming import plan_blocks, plan_slide, stream_blocks
from napari_wsseg.methods.tiling import collect_tiles, iter_tiles
from napari_wsseg.phantoms.wsi import write_wsi
from napari_wsseg.training.progress_bar import ProgressBar, format_progress

torch.set_num_threads(1)
SMALL = {"channels": (4, 8), "hidden": 16, "feat_dim": 8, "attn_dim": 4}


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsi") / "s.ome.tif"
    info = write_wsi(path, (2048, 2048), seed=3, tissue=0.3, tumour=0.1, bank=2)
    return path, info


class Counting:
    """Wraps a tile reader and counts level-0 tiles decoded."""

    def __init__(self, reader) -> None:
        self.reader, self.level0 = reader, 0

    def chunk(self, level):
        return self.reader.chunk(level)

    def read_region(self, level, y0, y1, x0, x1):
        if level == 0:
            th, tw = self.reader.chunk(0)
            self.level0 += (-(-y1 // th) - y0 // th) * (-(-x1 // tw) - x0 // tw)
        return self.reader.read_region(level, y0, y1, x0, x1)


def test_thumbnail_tissue_keeps_the_tiles_of_a_full_scan_and_skips_glass_chunks(wsi):
    path, info = wsi
    image = open_slide(path)
    levels = slide_levels(image)
    full = np.zeros((64, 64), bool)
    for blk in iter_tiles(levels, 32):
        full[blk.rows, blk.cols] = True
    reader = Counting(tile_reader(image))
    grid, cand, plan, thumb = plan_slide(levels, 32, reader=reader)
    assert thumb == len(levels) - 1 and grid.shape == (64, 64)
    got = np.zeros_like(full)
    for blk in stream_blocks(levels, grid, plan, reader, threads=2):
        got[blk.rows, blk.cols] = True
    np.testing.assert_array_equal(got, full)
    assert cand[full].all()
    # of the 8x8 chunks of 256 px, only those under a candidate tile are decoded
    with_cand = cand.reshape(8, 8, 8, 8).any(axis=(1, 3)).sum()
    assert reader.level0 == with_cand < 64
    assert 0.2 < full.mean() < 0.45  # tissue near the 0.3 asked for
    # the dask fallback (no direct reader) plans and keeps the same tiles
    grid2, cand2, plan2, _ = plan_slide(levels, 32)
    np.testing.assert_array_equal(cand2, cand)
    got2 = np.zeros_like(full)
    for blk in stream_blocks(levels, grid2, plan2, None, threads=0):
        got2[blk.rows, blk.cols] = True
    np.testing.assert_array_equal(got2, full)


def test_plan_reads_only_chunks_with_candidates_and_caps_block_bytes():
    cand = np.zeros((16, 40), bool)
    cand[9, 3] = True  # chunk (1, 0) with 8x8 tiles per 256 px chunk at tile 32
    plan = plan_blocks(cand, 32, (256, 256))
    assert [(b.r0, b.r1, b.c0, b.c1) for b in plan] == [(8, 16, 0, 8)]
    cand[:] = True
    plan = plan_blocks(cand, 32, (256, 256), max_block_bytes=8 * 8 * 32 * 32 * 3 * 2)
    assert all((b.r1 - b.r0) * (b.c1 - b.c0) <= 128 for b in plan)
    covered = np.zeros_like(cand)
    for b in plan:
        covered[b.r0 : b.r1, b.c0 : b.c1] |= b.candidates
    assert covered.all()


def _reference(model: DistillModel, image, cfg: DistillConfig):
    """All foreground tiles at once, no streaming (what predict_slide must equal)."""
    bag = collect_tiles(slide_levels(image), cfg.tile, cfg.level, cfg.white, cfg.max_background)
    x = torch.from_numpy(bag.tiles).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        hs = model.student.features(x)
        inst = torch.sigmoid(model.student.instance_logits(x)).numpy()
        a = torch.softmax(model.teacher.attention.scores(model.teacher.features(x)), 0).numpy()
        z, _ = model.student.attention(hs)
        bag_p = float(torch.sigmoid(model.student.classifier(z)))
    return bag, inst, a / a.max(), bag_p


@pytest.mark.parametrize("workers", [1, 3])
def test_streamed_predict_equals_one_pass_over_all_tiles(wsi, workers):
    """Also with several model threads: batches finish out of order but pool in order."""
    torch.manual_seed(0)
    cfg = DistillConfig(predict_batch=100, **SMALL)
    model = DistillModel(cfg)
    image = open_slide(wsi[0])
    bag, inst, att, bag_p = _reference(model, image, cfg)
    maps = predict_slide(model, image, cfg, readers=2, workers=workers)
    fg = maps.valid["attention"]
    assert fg.sum() == len(bag) and fg[bag.rows, bag.cols].all()
    np.testing.assert_allclose(maps.maps["instance_prob"][bag.rows, bag.cols], inst, atol=1e-5)
    np.testing.assert_allclose(maps.maps["attention"][bag.rows, bag.cols], att, atol=1e-5)
    assert maps.probabilities["tumor"] == pytest.approx(bag_p, abs=1e-5)
    assert (maps.maps["instance_prob"][~fg] == 0).all()


def test_progress_reports_fill_the_same_maps_and_cancel_keeps_what_is_done(wsi):
    cfg = DistillConfig(predict_batch=64, **SMALL)
    model = DistillModel(cfg)
    image = open_slide(wsi[0])
    seen: list[Progress] = []
    filled: list[int] = []

    def on(p: Progress, partial) -> None:
        seen.append(p)
        filled.append(int(partial.valid["instance_prob"].sum()))

    with reporting(on, min_interval=0.0):
        maps = predict_slide(model, image, cfg, readers=1)
    assert seen[-1].finished and seen[-1].done == seen[-1].total > 0
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert filled == sorted(filled) and filled[-1] == maps.valid["attention"].sum()
    assert seen[1].eta is not None and seen[-1].extra["thumbnail_level"] > 0

    calls: list[Progress] = []
    with reporting(lambda p, m: calls.append(p), cancel=lambda: len(calls) >= 2, min_interval=0):
        part = predict_slide(model, image, cfg, readers=1, workers=2)
    assert calls[-1].cancelled and not calls[-1].finished
    n = part.valid["attention"].sum()
    assert 0 < n < maps.valid["attention"].sum()
    done = part.valid["attention"]  # what was done equals the full run there
    np.testing.assert_allclose(
        part.maps["instance_prob"][done], maps.maps["instance_prob"][done], atol=1e-6
    )


def test_model_threads_run_at_one_intra_op_thread_and_restore_the_count(wsi):
    """Overlapping calls (two Explain runs) leave torch at its own count, not at 1."""
    import threading

    from napari_wsseg.methods.distill import predict as mod

    cfg = DistillConfig(predict_batch=64, **SMALL)
    model = DistillModel(cfg)
    image = open_slide(wsi[0])
    seen: list[int] = []
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert mod.default_workers(torch.device("cpu")) == 2
        with mod._one_intra_op_thread():
            assert torch.get_num_threads() == 1
            assert mod.default_workers(torch.device("cpu")) == 2  # the saved count

            def explain() -> None:
                with reporting(lambda p, m: seen.append(torch.get_num_threads())):
                    predict_slide(model, image, cfg, readers=1)

            t = threading.Thread(target=explain)
            t.start()
            t.join()
            assert torch.get_num_threads() == 1  # the outer call is still inside
        assert torch.get_num_threads() == 2 and set(seen) == {1}
        assert mod.default_workers(torch.device("cuda")) == 1
    finally:
        torch.set_num_threads(old)


def test_progress_bar_shows_fraction_rate_and_eta():
    p = Progress(done=450, total=1000, elapsed=9.0)
    line = format_progress(p, width=10)
    assert line.startswith("[####......]") and " 45%" in line
    assert "450/1000 tiles" in line and "50 tiles/s" in line and "ETA 0:11" in line
    out = io.StringIO()
    bar = ProgressBar("slide.tif", out)
    for d in range(0, 1001, 50):
        bar(Progress(d, 1000, 1 + d / 100, finished=d == 1000))
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].endswith("done in 0:11")  # one line per 10 %
