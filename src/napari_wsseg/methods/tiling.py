"""Tiles of a slide pyramid, streamed from disk block by block.

A slide is a bag of square tiles at one pyramid level. Tiles whose pixels are
mostly near-white (>= 75 % in the Distill-to-Label breast set) are background and
dropped. Each tile keeps its grid position so results map back onto the slide:
tile (row, col) at level ``l`` covers level-0 pixels starting at
``(row * t * ds_y, col * t * ds_x)`` where ``ds`` is the level's downsample.

Only one block of the level (a few chunk rows, capped in bytes) is ever held in
memory, so a slide that does not fit in memory still goes through. No torch here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_wsseg.methods.base import Grid


@dataclass
class TileGrid:
    """The tile lattice of one pyramid level.

    ``tile`` is the tile side in level pixels, ``downsample`` the level-0 pixels per
    level pixel per axis, ``shape`` the number of whole tiles (rows, cols): partial
    tiles at the right and bottom edges are left out.
    """

    level: int
    tile: int
    downsample: tuple[float, float]
    shape: tuple[int, int]

    @property
    def tile0(self) -> tuple[float, float]:
        """Tile side in level-0 pixels (y, x)."""
        return (self.tile * self.downsample[0], self.tile * self.downsample[1])

    def origin0(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Level-0 (y, x) of the top-left pixel of each tile, shape (n, 2)."""
        ty, tx = self.tile0
        return np.stack([np.round(rows * ty), np.round(cols * tx)], axis=1).astype(np.int64)

    def grid(self) -> Grid:
        """Placement of a one-pixel-per-tile map over level-0 pixels (for napari)."""
        return Grid.downsampled(self.tile0)


@dataclass
class TileBlock:
    """Foreground tiles of one block: grid positions and uint8 pixels (n, t, t, C)."""

    rows: np.ndarray
    cols: np.ndarray
    tiles: np.ndarray


def _level_shape(arr: Any) -> tuple[int, int]:
    return int(arr.shape[0]), int(arr.shape[1])


def make_grid(levels: Sequence[Any], tile: int, level: int = 0) -> TileGrid:
    """The tile lattice of ``levels[level]`` (levels finest first, (Y, X[, C]))."""
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    if not 0 <= level < len(levels):
        raise ValueError(f"level {level} not in the pyramid (it has {len(levels)} levels)")
    h0, w0 = _level_shape(levels[0])
    h, w = _level_shape(levels[level])
    return TileGrid(level, tile, (h0 / h, w0 / w), (h // tile, w // tile))


def _chunk_rows(arr: Any) -> int:
    """Rows of one storage chunk (zarr ``chunks`` tuple or dask ``chunks`` tuples)."""
    chunks = getattr(arr, "chunks", None)
    if not chunks:
        return 0
    first = chunks[0]
    if isinstance(first, tuple):  # dask: ((c0, c1, ...), ...)
        first = first[0] if first else 0
    return int(first)


def background_fraction(tiles: np.ndarray, white: int = 220) -> np.ndarray:
    """Fraction of near-white pixels per tile (n, t, t, C) -> (n,).

    A pixel is near-white when every channel is >= ``white`` (bright and unsaturated:
    pale eosin pink has a low green channel and stays tissue).
    """
    px = tiles if tiles.ndim == 3 else tiles.min(axis=-1)
    return (px >= white).reshape(len(tiles), -1).mean(axis=1)


def _to_tiles(block: np.ndarray, tile: int) -> np.ndarray:
    """(rows*t, cols*t, C) -> (rows*cols, t, t, C) in row-major tile order."""
    if block.ndim == 2:
        block = block[..., None]
    r, c = block.shape[0] // tile, block.shape[1] // tile
    t = block.reshape(r, tile, c, tile, block.shape[2]).transpose(0, 2, 1, 3, 4)
    return t.reshape(r * c, tile, tile, block.shape[2])


def iter_tiles(
    levels: Sequence[Any],
    tile: int,
    level: int = 0,
    white: int = 220,
    max_background: float = 0.75,
    max_block_bytes: int = 32 * 2**20,
) -> Iterator[TileBlock]:
    """Stream the foreground tiles of a level, one block at a time.

    Blocks are whole tile rows whose height follows the storage chunk height (so
    each chunk is decoded once per block), capped at ``max_block_bytes``; if a
    single tile row is wider than that, it is read in column pieces. Tiles with a
    near-white fraction >= ``max_background`` are dropped (Distill-to-Label, IV-A).
    """
    grid = make_grid(levels, tile, level)
    arr = levels[level]
    gh, gw = grid.shape
    if gh == 0 or gw == 0:
        return
    channels = int(arr.shape[2]) if len(arr.shape) == 3 else 1
    itemsize = np.dtype(getattr(arr, "dtype", np.uint8)).itemsize
    row_bytes = tile * tile * channels * itemsize  # one tile
    cols_per = max(1, min(gw, max_block_bytes // row_bytes))
    rows_by_chunk = max(1, _chunk_rows(arr) // tile)
    rows_per = max(1, min(rows_by_chunk, max_block_bytes // (row_bytes * cols_per)))
    for r0 in range(0, gh, rows_per):
        r1 = min(gh, r0 + rows_per)
        for c0 in range(0, gw, cols_per):
            c1 = min(gw, c0 + cols_per)
            block = np.asarray(arr[r0 * tile : r1 * tile, c0 * tile : c1 * tile])
            tiles = _to_tiles(block, tile)
            rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
            keep = background_fraction(tiles, white) < max_background
            yield TileBlock(rr.ravel()[keep], cc.ravel()[keep], tiles[keep])


@dataclass
class TileBag:
    """The foreground tiles of one slide: positions always, pixels if small enough.

    ``tiles`` is None when the slide's foreground exceeds the cache limit; then
    :meth:`read` fetches the requested tiles from the lazy level one by one.
    """

    grid: TileGrid
    rows: np.ndarray
    cols: np.ndarray
    source: Any = None
    tiles: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, index: np.ndarray) -> np.ndarray:
        """Pixels (n, t, t, C) of the tiles at positions ``index`` of this bag."""
        if self.tiles is not None:
            return self.tiles[index]
        t = self.grid.tile
        out = [
            np.asarray(self.source[r * t : (r + 1) * t, c * t : (c + 1) * t])
            for r, c in zip(self.rows[index], self.cols[index])
        ]
        arr = np.stack(out) if out else np.zeros((0, t, t, 3), np.uint8)
        return arr if arr.ndim == 4 else arr[..., None]


def collect_tiles(
    levels: Sequence[Any],
    tile: int,
    level: int = 0,
    white: int = 220,
    max_background: float = 0.75,
    cache_bytes: int = 256 * 2**20,
    max_block_bytes: int = 32 * 2**20,
) -> TileBag:
    """One streaming pass over a level: the slide's foreground tiles as a bag.

    Pixels are kept while their total stays under ``cache_bytes``; past that the bag
    keeps only positions and reads tiles on demand (slides larger than memory).
    """
    grid = make_grid(levels, tile, level)
    rows, cols, kept, size = [], [], [], 0
    for blk in iter_tiles(levels, tile, level, white, max_background, max_block_bytes):
        rows.append(blk.rows)
        cols.append(blk.cols)
        size += blk.tiles.nbytes
        if kept is not None and size <= cache_bytes:
            kept.append(blk.tiles)
        else:
            kept = None
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    tiles = None
    if kept is not None:
        ch = int(levels[level].shape[2]) if len(levels[level].shape) == 3 else 1
        tiles = np.concatenate(kept) if kept else np.zeros((0, tile, tile, ch), np.uint8)
    return TileBag(grid, r, c, source=levels[level], tiles=tiles)


def scatter(grid: TileGrid, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A (rows, cols) float32 map with ``values`` at the tiles, 0 elsewhere (background)."""
    out = np.zeros(grid.shape, np.float32)
    out[rows, cols] = values
    return out


def tile_labels(mask: np.ndarray, grid: TileGrid, min_fraction: float = 0.5) -> np.ndarray:
    """Per-tile 0/1 label map from a level-0 label mask: target covers >= ``min_fraction``.

    For evaluation, and for Distill's ``masks`` stage (ours: tile targets from the
    user's expert or corrected masks; the paper's stages never see tile labels).
    """
    ty, tx = grid.tile0
    gh, gw = grid.shape
    out = np.zeros(grid.shape, np.float32)
    fg = np.asarray(mask) > 0
    for r in range(gh):
        y0, y1 = int(round(r * ty)), int(round((r + 1) * ty))
        band = fg[y0:y1]
        for c in range(gw):
            x0, x1 = int(round(c * tx)), int(round((c + 1) * tx))
            out[r, c] = band[:, x0:x1].mean() >= min_fraction
    return out
