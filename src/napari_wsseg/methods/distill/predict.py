"""Distill-to-Label inference on a whole slide, streamed tile block by tile block.

Maps (one pixel per tile, placed on level-0 pixels by ``TileGrid.grid()``):

- ``instance_prob``: the student's probability for each tile alone (bag of size 1);
- ``mask_prob``: the same map, named as the mask for the Labels layer, all 0 on a
  slide whose bag probability is below the threshold (``gate_mask``, ours: a slide
  called normal gets no tumour tile, the MIL assumption; :func:`gated`);
- ``attention``: the teacher's attention weight a_k over the whole slide (eq. 2),
  divided by the slide's largest weight so the most attended tile is 1 and ratios
  between tiles are kept (raw weights sum to 1 and are too small to display):
  ``a_k / max a = exp(e_k - max e)``, so only the logits e_k are kept per tile.

Background tiles are 0 in every map and False in ``Maps.valid`` (so evaluation
skips them). The bag probability (``tumor``) is the student's, pooled over all
foreground tiles with a streaming softmax.

Streaming (:mod:`..streaming`): tissue is found on a thumbnail level, only the
level-0 chunks under tissue are decoded, by reader threads that run ahead of the
model, and results go straight into preallocated tile grids, so memory is the
grids (9 bytes per tile: 100k x 100k at 32 px is 88 MB) plus a few blocks, not the
slide. Progress and partial maps go to :func:`..progress.report`; a cancel keeps
what is done. The nets run on channels_last tensors, on CUDA in bf16 autocast (untested here:
no GPU in the session that wrote it).

On CPU the nets run in ``workers`` threads (default: torch's intra-op thread count)
with one intra-op thread each, for the length of the call. One stream with two
intra-op threads waits at every op for its slowest thread, so a JPEG decode on
either core stalls both; independent streams have no such barrier (measured on 2
cores: the model alone 4050 -> 5200 tiles/s, see ``docs/benchmarks.md``). Batches
are pooled in plan order in the calling thread, so the slide probability does not
depend on which worker finishes first.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from napari_wsseg.io import open_slide, slide_levels
from napari_wsseg.io.slide_tiles import tile_reader
from napari_wsseg.methods.base import Maps
from napari_wsseg.methods.progress import Progress, cancelled, report
from napari_wsseg.methods.streaming import plan_slide, stream_blocks
from napari_wsseg.methods.tiling import make_grid

if TYPE_CHECKING:
    from napari_wsseg.io.base import ImageData
    from napari_wsseg.methods.distill.nets import DistillModel


class _StreamingPool:
    """Attention pooling z = sum_k softmax(e)_k h_k (eq. 1-2) over tiles seen in chunks."""

    def __init__(self) -> None:
        self.m = -float("inf")
        self.s = 0.0
        self.acc: torch.Tensor | None = None

    def add(self, e: torch.Tensor, h: torch.Tensor) -> None:
        m_new = max(self.m, float(e.max()))
        scale = float(np.exp(self.m - m_new)) if self.acc is not None else 0.0
        w = torch.exp(e - m_new)
        self.s = self.s * scale + float(w.sum())
        self.acc = (w @ h) if self.acc is None else self.acc * scale + w @ h
        self.m = m_new

    def pooled(self) -> torch.Tensor | None:
        return None if self.acc is None else self.acc / self.s


CUDA_BATCH = 4096  # tiles per forward on CUDA: 12 MB of 32 px uint8 tiles


def default_readers() -> int:
    """Reader threads: the cores beyond the first, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class _Runner:
    """Both nets on uint8 tile batches; writes into the tile grids (see module doc)."""

    def __init__(self, model: DistillModel, inst: np.ndarray, logit: np.ndarray) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.cuda = self.device.type == "cuda"
        # NHWC uint8 tiles permuted to NCHW are channels_last already; channels_last
        # weights avoid a layout copy per conv (~15 % faster on CPU here too).
        model.to(memory_format=torch.channels_last)
        self.inst, self.logit = inst, logit
        self.pool = _StreamingPool()

    def __call__(self, tiles: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        e, h = self.forward(tiles, rows, cols)
        self.pool.add(e, h)

    def forward(
        self, tiles: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one batch's tiles into the grids; return its pooling inputs (e, h).

        Thread-safe for disjoint tiles: the grids are written at this batch's cells only.
        """
        x = torch.from_numpy(np.ascontiguousarray(tiles))
        if self.cuda:  # pinned host copy, async upload; NHWC permuted = channels_last
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        student, teacher = self.model.student, self.model.teacher
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            hs = student.features(x)
            ht = teacher.features(x)
            hs, ht = hs.float(), ht.float()  # heads and pooling in float32
            e = student.attention.scores(hs)
            self.inst[rows, cols] = torch.sigmoid(student.instance_logits_from(hs)).cpu().numpy()
            self.logit[rows, cols] = teacher.attention.scores(ht).cpu().numpy()
        return e, hs


_THREADS_LOCK = threading.Lock()
_THREADS_SAVED: list[int] = []  # torch's own count while any call holds 1 (one entry per call)


def default_workers(device: torch.device) -> int:
    """Model threads: torch's intra-op thread count on CPU (1 on CUDA), at most 8."""
    if device.type != "cpu":
        return 1
    with _THREADS_LOCK:  # inside another call's _one_intra_op_thread: the count it saved
        n = _THREADS_SAVED[0] if _THREADS_SAVED else torch.get_num_threads()
    return max(1, min(8, n))


@contextmanager
def _one_intra_op_thread() -> Iterator[None]:
    """torch's intra-op threads at 1 (process-wide) while any call is inside; the first
    call in saves the count and the last one out restores it, so overlapping calls
    (two viewers' Explain runs) do not leave the process at 1 thread."""
    with _THREADS_LOCK:
        _THREADS_SAVED.append(_THREADS_SAVED[0] if _THREADS_SAVED else torch.get_num_threads())
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            old = _THREADS_SAVED.pop()
            if not _THREADS_SAVED:
                torch.set_num_threads(old)


class _Workers:
    """Batches run on ``n`` threads, pooled in submission order (see module doc).

    At most ``2 n`` batches are in flight, so memory stays a few batches. With
    ``n == 1`` the batch runs in the calling thread, as before.
    """

    def __init__(self, run: _Runner, fg: np.ndarray, n: int) -> None:
        self.run, self.fg, self.n = run, fg, n
        self.pending: deque[Future] = deque()
        self.exe = ThreadPoolExecutor(n, thread_name_prefix="wsseg-model") if n > 1 else None

    def submit(self, tiles: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        if self.exe is None:
            self._merge(self.run.forward(tiles, rows, cols), rows, cols)
            return
        while len(self.pending) >= 2 * self.n:
            self._merge_oldest()
        self.pending.append(self.exe.submit(self._one, tiles, rows, cols))

    def _one(self, tiles: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple:
        return self.run.forward(tiles, rows, cols), rows, cols

    def _merge_oldest(self) -> None:
        self._merge(*self.pending.popleft().result())

    def _merge(self, eh: tuple, rows: np.ndarray, cols: np.ndarray) -> None:
        self.run.pool.add(*eh)
        self.fg[rows, cols] = True  # after the grids hold its values: partial maps stay true

    def drain(self) -> None:
        """Wait for every batch in flight (also after a cancel: done work is kept)."""
        while self.pending:
            self._merge_oldest()

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        """Batches not started are dropped (an error or a cancel); running ones finish."""
        if self.exe is not None:
            for f in self.pending:
                f.cancel()
            self.exe.shutdown(wait=True)


@torch.no_grad()
def predict_slide(
    model: DistillModel,
    image: ImageData,
    cfg: Any,
    readers: int | None = None,
    workers: int | None = None,
) -> Maps:
    """Tile maps and the slide probability for one slide (see module docstring).

    ``readers`` decode threads and ``workers`` model threads (defaults: see
    :func:`default_readers`, :func:`default_workers`).
    """
    levels = slide_levels(image)
    reader = tile_reader(image)
    device = next(model.parameters()).device
    n = default_workers(device) if workers is None else max(1, int(workers))
    try:
        with _one_intra_op_thread() if n > 1 else nullcontext():
            return _predict(
                model, levels, cfg, reader, default_readers() if readers is None else readers, n
            )
    finally:
        if reader is not None:
            reader.close()


def _predict(
    model: DistillModel, levels: list, cfg: Any, reader: Any, readers: int, workers: int
) -> Maps:
    t0 = time.perf_counter()
    grid, cand, plan, thumb = plan_slide(
        levels, cfg.tile, cfg.level, cfg.white, cfg.max_background, reader
    )
    model.eval()
    inst = np.zeros(grid.shape, np.float32)
    logit = np.zeros(grid.shape, np.float32)
    fg = np.zeros(grid.shape, bool)
    run = _Runner(model, inst, logit)
    partial = Maps(mask="mask_prob", threshold=cfg.threshold)
    partial.maps = {"instance_prob": inst, "mask_prob": inst}
    partial.grids = {name: grid.grid() for name in ("instance_prob", "mask_prob", "attention")}
    partial.valid = {"instance_prob": fg, "mask_prob": fg}
    total, done, kept = int(cand.sum()), 0, 0
    extra = {"thumbnail_level": thumb, "blocks": len(plan), "candidates": total}
    buf: list = []
    batch = max(1, int(cfg.predict_batch))
    if run.cuda:  # 512 tiles of 32 px keep a GPU idle between launches (untested: no GPU here)
        batch = max(batch, CUDA_BATCH)

    def flush(final: bool) -> None:
        nonlocal buf
        while buf and (final or sum(len(b.rows) for b in buf) >= batch):
            tiles = np.concatenate([b.tiles for b in buf])
            rows = np.concatenate([b.rows for b in buf])
            cols = np.concatenate([b.cols for b in buf])
            n = len(rows) if final else (len(rows) // batch) * batch
            for i in range(0, n, batch):
                s = slice(i, min(n, i + batch))
                pool.submit(tiles[s], rows[s], cols[s])
            rest = slice(n, None)
            buf = [type(buf[0])(rows[rest], cols[rest], tiles[rest])] if n < len(rows) else []
            if final:
                break

    with _Workers(run, fg, workers) as pool:
        for blk, b in zip(
            stream_blocks(levels, grid, plan, reader, cfg.white, cfg.max_background,
                          threads=readers, prefetch=2 * max(1, readers) + 1, stop=cancelled),
            plan,
        ):  # fmt: skip
            if len(blk.rows):
                buf.append(blk)
                kept += len(blk.rows)
            flush(False)
            done += int(b.candidates.sum())
            report(Progress(done, total, time.perf_counter() - t0,
                            extra={**extra, "tissue": kept}), partial)  # fmt: skip
        flush(True)
        pool.drain()
    stopped = done < total
    maps = Maps(mask="mask_prob", threshold=cfg.threshold)
    att = np.zeros(grid.shape, np.float32)
    if fg.any():
        e = logit[fg]
        att[fg] = np.exp(e - e.max())
        z = run.pool.pooled()
        bag = float(torch.sigmoid(model.student.classifier(z)).squeeze())
    else:  # an all-background slide: nothing to attend to, no tumour evidence
        bag = 0.0
    mask_prob = gated(inst, bag, cfg)
    maps.maps = {"instance_prob": inst, "mask_prob": mask_prob, "attention": att}
    maps.grids = {name: grid.grid() for name in maps.maps}
    maps.valid = {name: fg for name in maps.maps}  # background tiles hold no prediction
    maps.probabilities = {cfg.label: bag}
    elapsed = time.perf_counter() - t0
    report(Progress(done, total, elapsed, cancelled=stopped, finished=not stopped,
                    extra={**extra, "tissue": kept}), maps)  # fmt: skip
    return maps


def gated(inst: np.ndarray, bag: float, cfg: Any) -> np.ndarray:
    """The mask map: the tile probabilities ``inst``, or zeros when ``cfg.gate_mask``
    and the slide's bag probability ``bag`` is below ``cfg.threshold``.

    Ours (issue 12): the paper labels instances and makes no slide mask. Without the
    gate a fine-tune that lifted a few background tiles over 0.5 put false tumour on
    slides the same model calls normal (the numbers: docs/methods/distill.md).
    """
    if cfg.gate_mask and bag < cfg.threshold:
        return np.zeros_like(inst)
    return inst.copy()


def _tile_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice of one slide's tile masks; 1 when both are empty (a tumour-free slide with
    no false tile), so a false tile on a normal slide counts as it does on a scored one."""
    total = int(truth.sum()) + int(pred.sum())
    return 1.0 if total == 0 else 2.0 * float((truth & pred).sum()) / total


def validate_slides(method: Any, model: DistillModel, items: list) -> dict[str, float]:
    """Bag AUC/accuracy of the student and, where reference masks exist, tile AUROC/F1
    and ``dice``: the mean over slides of the tile-mask Dice (:func:`_tile_dice`).

    Tile labels come from the reference mask (tumour covering >= half the tile);
    only foreground tiles count.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    from napari_wsseg.io import read_mask
    from napari_wsseg.methods.tiling import tile_labels

    cfg = method.config
    bag_y, bag_p, inst_y, inst_p, dices = [], [], [], [], []
    for it in items:
        if it.modality != "slide" or cfg.label not in it.labels:
            continue
        image = open_slide(it.path)
        maps = predict_slide(model, image, cfg)
        bag_y.append(float(it.labels[cfg.label]))
        bag_p.append(maps.probabilities[cfg.label])
        if it.reference_mask:
            grid = make_grid(slide_levels(image), cfg.tile, cfg.level)
            lab = tile_labels(read_mask(it.reference_mask), grid)
            fg = maps.valid["instance_prob"]  # tiler foreground; attention may underflow to 0
            inst_y.append(lab[fg])
            inst_p.append(maps.maps["instance_prob"][fg])
            mask_p = maps.maps["mask_prob"][fg]  # the mask's map: gated (gate_mask)
            dices.append(_tile_dice(lab[fg] > 0.5, mask_p >= cfg.threshold))
    out: dict[str, float] = {}
    if bag_y:
        y, p = np.array(bag_y), np.array(bag_p)
        out["bag_accuracy"] = float(((p >= 0.5) == (y > 0.5)).mean())
        if len(set(y.tolist())) == 2:
            out["bag_auc"] = float(roc_auc_score(y, p))
    if dices:
        out["dice"] = float(np.mean(dices))
    if inst_y:
        y, p = np.concatenate(inst_y), np.concatenate(inst_p)
        out["instance_accuracy"] = float(((p >= cfg.threshold) == (y > 0.5)).mean())
        out["instance_f1"] = float(f1_score(y > 0.5, p >= cfg.threshold, zero_division=0))
        if len(set(y.tolist())) == 2:
            out["instance_auroc"] = float(roc_auc_score(y, p))
    return out
