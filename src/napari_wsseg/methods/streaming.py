"""Whole-slide tiles streamed with bounded memory: tissue first, then reader threads.

1. **Tissue on a thumbnail.** The coarsest pyramid level with at most one pixel
   per tile is read (in row bands) and a tile becomes a *candidate* when any
   thumbnail pixel over it is darker than ``white + (255 - white) * max_background``
   (a tile with a quarter of tissue pixels at ``white`` averages to that value on
   glass at 255), dilated by one tile so averaging at island borders does not drop
   a tile. Level-0 chunks with no candidate tile are never decoded. Candidates still
   get the exact per-pixel background test of :func:`.tiling.background_fraction`,
   so the kept tiles are those :func:`.tiling.iter_tiles` keeps (a test checks it).
2. **Blocks.** Candidate tiles are read in chunk-aligned rectangles (one chunk row
   high, runs of candidate columns, capped in bytes), in row-major order.
3. **Reader threads** decode blocks ahead of the consumer (``prefetch`` blocks in
   flight at most), so memory is bounded by ``prefetch * max_block_bytes`` whatever
   the slide size, and decoding overlaps the model.

No torch here; the model side is in each method's predict.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_wsseg.methods.tiling import TileBlock, TileGrid, background_fraction, make_grid


@dataclass
class Block:
    """A chunk-aligned read: tile rows [r0, r1), cols [c0, c1), candidates inside."""

    r0: int
    r1: int
    c0: int
    c1: int
    candidates: np.ndarray  # bool (r1 - r0, c1 - c0)


def thumbnail_level(levels: Sequence[Any], grid: TileGrid, max_pixels: int = 2**26) -> int:
    """The coarsest level with >= 1 pixel per tile and at most ``max_pixels``; else
    ``grid.level`` (then there is nothing to gain and every tile is a candidate)."""
    h0, w0 = levels[0].shape[:2]
    ty, tx = grid.tile0
    best = grid.level
    for k in range(grid.level + 1, len(levels)):
        h, w = levels[k].shape[:2]
        if h0 / h <= ty and w0 / w <= tx and h * w <= max_pixels:
            best = k
    return best


def _read(levels: Sequence[Any], reader: Any, level: int, y0: int, y1: int, x0: int, x1: int):
    if reader is not None:
        return reader.read_region(level, y0, y1, x0, x1)
    part = levels[level][y0:y1, x0:x1]
    if hasattr(part, "compute"):  # dask: no thread pool inside our reader threads
        return np.asarray(part.compute(scheduler="synchronous"))
    return np.asarray(part)


def tissue_candidates(
    levels: Sequence[Any],
    grid: TileGrid,
    white: int = 220,
    max_background: float = 0.75,
    reader: Any = None,
    band_bytes: int = 32 * 2**20,
) -> tuple[np.ndarray, int]:
    """Bool (rows, cols) map of tiles that may hold tissue, and the level it came from."""
    k = thumbnail_level(levels, grid)
    gh, gw = grid.shape
    if k == grid.level:
        return np.ones(grid.shape, bool), k
    h0, w0 = levels[0].shape[:2]
    thumb = levels[k]
    h, w = thumb.shape[:2]
    dy, dx = h0 / h, w0 / w
    ty, tx = grid.tile0
    thr = white + (255 - white) * max_background
    row_of = np.minimum((np.arange(h) * dy / ty).astype(np.int64), gh)  # gh = beyond grid
    col_of = np.minimum((np.arange(w) * dx / tx).astype(np.int64), gw)
    cand = np.zeros((gh + 1, gw + 1), bool)
    step = max(1, band_bytes // max(1, w * 3))
    for y0 in range(0, h, step):
        px = _read(levels, reader, k, y0, min(h, y0 + step), 0, w)
        dark = (px.min(axis=-1) if px.ndim == 3 else px) < thr
        ys, xs = np.nonzero(dark)
        cand[row_of[y0 + ys], col_of[xs]] = True
    cand = cand[:gh, :gw]
    from scipy import ndimage as ndi

    return ndi.binary_dilation(cand, np.ones((3, 3), bool)), k


def plan_blocks(
    candidates: np.ndarray,
    tile: int,
    chunk: tuple[int, int],
    channels: int = 3,
    max_block_bytes: int = 16 * 2**20,
) -> list[Block]:
    """Chunk-aligned reads covering every candidate tile, row-major."""
    gh, gw = candidates.shape
    rows_per = max(1, chunk[0] // tile)
    cols_chunk = max(1, chunk[1] // tile)
    cols_cap = max(1, max_block_bytes // (tile * tile * channels * rows_per))
    out: list[Block] = []
    for r0 in range(0, gh, rows_per):
        r1 = min(gh, r0 + rows_per)
        band = candidates[r0:r1]
        used = band.any(axis=0)
        # chunk columns holding a candidate, grouped into runs of adjacent chunks
        chunks_used = np.nonzero(
            np.add.reduceat(used, np.arange(0, gw, cols_chunk)) > 0
        )[0] if gw else np.zeros(0, int)  # fmt: skip
        i = 0
        while i < len(chunks_used):
            j = i
            while j + 1 < len(chunks_used) and chunks_used[j + 1] == chunks_used[j] + 1:
                j += 1
            c0, c_end = chunks_used[i] * cols_chunk, min(gw, (chunks_used[j] + 1) * cols_chunk)
            for c in range(c0, c_end, cols_cap):
                c1 = min(c_end, c + cols_cap)
                if band[:, c:c1].any():
                    out.append(Block(r0, r1, c, c1, band[:, c:c1].copy()))
            i = j + 1
    return out


def read_block(
    levels: Sequence[Any],
    grid: TileGrid,
    block: Block,
    reader: Any = None,
    white: int = 220,
    max_background: float = 0.75,
) -> TileBlock:
    """Decode one block and keep its candidate tiles that pass the background test."""
    t = grid.tile
    px = _read(levels, reader, grid.level, block.r0 * t, block.r1 * t, block.c0 * t, block.c1 * t)
    if px.ndim == 2:
        px = px[..., None]
    r, c = block.r1 - block.r0, block.c1 - block.c0
    tiles = px.reshape(r, t, c, t, px.shape[2]).transpose(0, 2, 1, 3, 4)
    rr, cc = np.nonzero(block.candidates)
    sel = tiles[rr, cc]  # (n, t, t, C) copy of the candidates only
    keep = background_fraction(sel, white) < max_background
    return TileBlock(rr[keep] + block.r0, cc[keep] + block.c0, sel[keep])


def stream_blocks(
    levels: Sequence[Any],
    grid: TileGrid,
    plan: list[Block],
    reader: Any = None,
    white: int = 220,
    max_background: float = 0.75,
    threads: int = 2,
    prefetch: int = 4,
    stop: Callable[[], bool] | None = None,
) -> Iterator[TileBlock]:
    """Blocks of ``plan`` decoded by ``threads`` workers, yielded in plan order.

    At most ``prefetch`` blocks are decoded ahead; ``stop()`` True ends the stream
    after the current block (pending reads are cancelled).
    """

    def job(b: Block) -> TileBlock:
        return read_block(levels, grid, b, reader, white, max_background)

    if threads <= 0:
        for b in plan:
            if stop is not None and stop():
                return
            yield job(b)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsseg-tiles") as pool:
        pending: deque = deque()
        todo = iter(plan)
        try:
            for b in todo:
                pending.append(pool.submit(job, b))
                if len(pending) >= prefetch:
                    break
            while pending:
                blk = pending.popleft().result()
                if stop is not None and stop():
                    return
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(job, nxt))
                yield blk
        finally:
            for f in pending:
                f.cancel()


def plan_slide(
    levels: Sequence[Any],
    tile: int,
    level: int = 0,
    white: int = 220,
    max_background: float = 0.75,
    reader: Any = None,
    max_block_bytes: int = 16 * 2**20,
) -> tuple[TileGrid, np.ndarray, list[Block], int]:
    """Grid, candidate map, block plan and thumbnail level of one slide."""
    grid = make_grid(levels, tile, level)
    cand, k = tissue_candidates(levels, grid, white, max_background, reader)
    arr = levels[level]
    if reader is not None:
        chunk = reader.chunk(level)
    else:
        ch = getattr(arr, "chunks", None)
        if ch and isinstance(ch[0], tuple):
            chunk = (int(ch[0][0]), int(ch[1][0]))
        elif ch:
            chunk = (int(ch[0]), int(ch[1]))
        else:
            chunk = (tile, tile)
    channels = int(arr.shape[2]) if len(arr.shape) == 3 else 1
    return grid, cand, plan_blocks(cand, tile, chunk, channels, max_block_bytes), k
