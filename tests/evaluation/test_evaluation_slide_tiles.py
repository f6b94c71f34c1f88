"""Slide tile maps in evaluation: foreground tiles only, cells on the map's Grid, class names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile

from napari_wsseg.evaluation.evaluate import (
    cell_fraction,
    class_targets,
    evaluate_items,
    instance_pairs,
    resize_to,
)
from napari_wsseg.methods.base import Grid, Maps
from napari_wsseg.methods.tiling import TileGrid, tile_labels

T = 16  # tile side of the slide tests


class _Item:
    def __init__(self, path, ref, modality="slide", labels=None):
        self.image_id, self.path, self.mask, self.modality = 0, path, None, modality
        self.labels, self.reference_mask = labels or {}, ref


def _slide_files(tmp_path):
    """A 100 x 100 slide (tile 16: a 6 x 6 lattice over 96 px, the 4 px edge dropped).

    Tile columns 0-1 are white background, the rest pink tissue; tiles (0-2, 3-5)
    are purple tumour, exactly covered by the reference mask.
    """
    rng = np.random.default_rng(0)
    img = np.full((100, 100, 3), 250, np.uint8)
    img[:, 2 * T :] = np.clip(
        np.array((230, 150, 190)) + rng.integers(-8, 8, (100, 68, 3)), 0, 255
    )
    img[: 3 * T, 3 * T : 6 * T] = (90, 40, 150)
    ref = np.zeros((100, 100), np.uint8)
    ref[: 3 * T, 3 * T : 6 * T] = 1
    tifffile.imwrite(tmp_path / "slide.tif", img)
    tifffile.imwrite(tmp_path / "ref.tif", ref)
    return str(tmp_path / "slide.tif"), str(tmp_path / "ref.tif"), ref


def test_evaluation_cell_fraction_follows_the_tile_grid_of_a_1000px_slide():
    """1000 px side, 64 px tiles: 15 whole tiles over 960 px; cell (i, j) = tile (i, j)."""
    grid = Grid.downsampled((64.0, 64.0))
    target = np.zeros((1000, 1000), bool)
    target[896:960, 896:960] = True  # exactly tile (14, 14)
    frac = cell_fraction(target, (15, 15), grid)
    assert frac[14, 14] == 1.0 and frac.sum() == 1.0
    edge = np.zeros((1000, 1000), bool)
    edge[960:, :] = True  # the dropped partial tiles belong to no cell
    edge[:, 960:] = True
    assert cell_fraction(edge, (15, 15), grid).sum() == 0.0
    # same tile labels as the tiler's own rule, on a random blobby mask
    rng = np.random.default_rng(3)
    blobs = np.kron(rng.random((25, 25)) > 0.6, np.ones((40, 40), bool))
    want = tile_labels(blobs, TileGrid(0, 64, (1.0, 1.0), (15, 15)))
    assert ((cell_fraction(blobs, (15, 15), grid) >= 0.5) == (want > 0)).all()


def test_evaluation_resize_to_places_tiles_by_their_grid():
    grid = Grid.downsampled((64.0, 64.0))
    rows = np.repeat(np.arange(15, dtype=np.float32)[:, None], 15, axis=1)
    out = resize_to(rows, (1000, 1000), grid)
    # tile 5's centre is at 5 * 64 + 31.5: the pixels either side interpolate to 5 -+ 1/128
    assert out[351, 0] == pytest.approx(5 - 1 / 128)
    assert out[352, 0] == pytest.approx(5 + 1 / 128)
    assert (out[:32, 10] == 0).all() and (out[928:960, 10] == 14).all()
    assert (out[960:] == 0).all() and (out[:, 960:] == 0).all()  # no tile there
    ones = resize_to(np.ones((15, 15), np.float32), (1000, 1000), grid)
    assert ones[:960, :960].min() == 1.0 and ones.sum() == 960 * 960
    # a map at the image's resolution with an identity grid is returned as is
    same = np.zeros((4, 4), np.float32)
    assert resize_to(same, (4, 4), Grid.identity(2)) is same


def test_evaluation_instance_pairs_skip_background_tiles_by_hand():
    """3 x 2 tiles, 2 of them background (prob 0, label 0): only 4 tiles are scored."""
    inst = np.array([[0.9, 0.0], [0.2, 0.0], [0.7, 0.4]], np.float32)
    valid = np.array([[1, 0], [1, 0], [1, 1]], bool)
    truth = np.zeros((6, 4), bool)
    truth[0:2, 0:2] = True  # tile (0, 0)
    truth[4:6, 2:4] = True  # tile (2, 1)
    maps = Maps(
        maps={"instance_prob": inst},
        grids={"instance_prob": Grid.downsampled((2.0, 2.0))},
        valid={"instance_prob": valid},
    )
    y, p = instance_pairs(maps, truth)
    assert y == [1.0, 0.0, 0.0, 1.0]
    assert p == pytest.approx([0.9, 0.2, 0.7, 0.4])
    # without the valid mask, the two background tiles would be two more correct negatives
    y_all, _ = instance_pairs(Maps(maps={"instance_prob": inst}, grids=maps.grids), truth)
    assert len(y_all) == 6
    with pytest.raises(ValueError, match="valid mask"):
        instance_pairs(Maps(maps={"instance_prob": inst}, valid={"instance_prob": valid.T}), truth)


def test_evaluation_distill_slide_counts_foreground_tiles_only(tmp_path):
    """The real distill predict: background tiles are left out of the instance metrics."""
    import torch

    from napari_wsseg import metrics as M
    from napari_wsseg.io import read_image
    from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel

    path, ref_path, ref = _slide_files(tmp_path)
    small = {"channels": (4, 8), "hidden": 16, "feat_dim": 8, "attn_dim": 4}
    method = DistillToLabel(DistillConfig(tile=T, predict_batch=16, **small))
    torch.manual_seed(0)
    model = method.build_model()
    with torch.inference_mode():
        out = evaluate_items(method, model, [_Item(path, ref_path, labels={"tumor": 1})])
        maps = method.predict(model, read_image(path, modality="slide"))
    fg = maps.valid["instance_prob"]
    assert fg.shape == (6, 6) and fg.sum() == 24 and not fg[:, :2].any()
    inst = out["instances"]
    assert inst["n"] == 24  # 36 tiles, 12 of them background
    labels = tile_labels(ref, TileGrid(0, T, (1.0, 1.0), (6, 6)))
    want = M.instance_metrics(labels[fg], maps.maps["instance_prob"][fg], 0.5)
    for key in ("accuracy", "f1", "auroc"):
        assert inst[key] == pytest.approx(want[key], nan_ok=True)
    assert set(out["segmentation"]) == {"tumor"}  # the slide's mask class, not "lesion"


class _TileOracle:
    """Predicts the reference tiles exactly, as a one-pixel-per-tile map on a Grid."""

    def predict(self, model, image):
        tiles = np.zeros((6, 6), np.float32)
        tiles[:3, 3:6] = 1.0
        return Maps(
            maps={"mask_prob": tiles},
            grids={"mask_prob": Grid.downsampled((float(T), float(T)))},
            mask="mask_prob",
        )


def test_evaluation_tile_map_segmentation_lines_up_with_the_mask(tmp_path):
    path, ref_path, _ = _slide_files(tmp_path)
    out = evaluate_items(_TileOracle(), None, [_Item(path, ref_path)])
    seg = out["segmentation"]["tumor"]
    # bilinear resampling only rounds the tumour's corner pixels off (stretching the
    # 6 tiles over all 100 px instead gives Dice 0.92, IoU 0.85, PxAP 0.90)
    assert seg["dice_hard"] > 0.99 and seg["iou"] > 0.98 and seg["pxap_image"] > 0.999


def test_evaluation_class_names_come_from_the_modality():
    ref = np.array([[0, 1], [2, 1]])
    assert class_targets(ref, "slide", [])[0][0] == "tumor"
    assert class_targets(ref, "ct", [])[0][0] == "pdac"
    assert class_targets(ref, "skin", [])[0][0] == "lesion"
    ((name, tgt),) = class_targets(ref, "mammo", [])
    assert name == "malignant+benign" and math.isclose(tgt.mean(), 0.75)
    assert class_targets(ref, "unknown", [])[0][0] == "foreground"
