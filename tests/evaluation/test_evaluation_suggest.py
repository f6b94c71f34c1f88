"""'Annotate next' scores (entropy + disagreement in the salient region) and evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_wsseg.evaluation.evaluate import cell_fraction, class_targets, evaluate_items
from napari_wsseg.evaluation.suggest import binary_entropy, rank_items, uncertainty_score
from napari_wsseg.methods.base import Maps


def test_evaluation_uncertainty_score_by_hand():
    p = np.array([[0.5, 0.9], [0.0, 0.05]])
    att = np.array([[0.5, 0.1], [0.2, 0.0]])
    got = uncertainty_score(Maps(maps={"mask_prob": p, "attention": att}, mask="mask_prob"))
    # salient: p > .1 or att > .1 -> (0,0), (0,1), (1,0)
    ent = (1.0 + binary_entropy(np.array(0.9)) + 0.0) / 3
    dis = (0.0 + 0.8 + 0.2) / 3
    assert got["entropy"] == pytest.approx(float(ent))
    assert got["disagreement"] == pytest.approx(dis)
    assert got["score"] == pytest.approx(float(ent) + dis)
    assert got["salient_fraction"] == 0.75
    empty = uncertainty_score(Maps(maps={"mask_prob": np.zeros((3, 3))}, mask="mask_prob"))
    assert empty["score"] == 0.0
    assert binary_entropy(np.array([0.0, 0.5, 1.0])).tolist() == [0.0, 1.0, 0.0]


class _Item:
    def __init__(self, i, path, mask=None, labels=None, ref=None):
        self.image_id, self.path, self.mask, self.modality = i, path, mask, "skin"
        self.labels, self.reference_mask = labels or {}, ref


class _FakeMethod:
    """Maps read from the file name: 'sure' images are confident, 'unsure' are 0.5."""

    def predict(self, model, image):
        img = np.asarray(image.data)
        return Maps(
            maps={"mask_prob": img, "attention": (img > 0.3).astype(float)},
            mask="mask_prob",
            probabilities={"lesion": float(img.max())},
        )


def test_evaluation_rank_items_prefers_uncertain(tmp_path):
    import tifffile

    sure = np.zeros((8, 8), np.float32)
    sure[2:4, 2:4] = 0.99
    unsure = np.zeros((8, 8), np.float32)
    unsure[2:4, 2:4] = 0.5
    for name, arr in (("sure", sure), ("unsure", unsure), ("done", unsure)):
        tifffile.imwrite(tmp_path / f"{name}.tif", arr)
    items = [
        _Item(1, str(tmp_path / "sure.tif")),
        _Item(2, str(tmp_path / "unsure.tif")),
        _Item(3, str(tmp_path / "done.tif"), mask="m.tif"),
    ]
    rows = rank_items(_FakeMethod(), None, items)
    assert [r["image_id"] for r in rows] == [2, 1]  # annotated image 3 left out


def test_evaluation_evaluate_items_perfect_prediction(tmp_path):
    import tifffile

    items = []
    for i, lesion in enumerate((1, 1, 0)):
        mask = np.zeros((8, 8), np.uint8)
        if lesion:
            mask[1 + i : 4 + i, 2:5] = 1
        tifffile.imwrite(tmp_path / f"i{i}.tif", mask.astype(np.float32))
        tifffile.imwrite(tmp_path / f"m{i}.tif", mask)
        items.append(
            _Item(
                i,
                str(tmp_path / f"i{i}.tif"),
                labels={"lesion": lesion},
                ref=str(tmp_path / f"m{i}.tif"),
            )
        )
    out = evaluate_items(_FakeMethod(), None, items)
    seg = out["segmentation"]["lesion"]
    assert seg["dice_hard"] == 1.0 and seg["iou"] == 1.0 and seg["dice_soft"] == 1.0
    assert seg["pxap_image"] == 1.0 and seg["pxap_image_n"] == 2 and seg["pxap_dataset"] == 1.0
    assert out["classification"]["lesion"]["auc"] == 1.0 and out["miou"] == 1.0


def test_evaluation_cell_fraction_and_class_targets():
    t = np.zeros((4, 6))
    t[:2, :3] = 1
    t[2, 3] = 1
    frac = cell_fraction(t, (2, 2))
    assert frac.tolist() == [[1.0, 0.0], [0.0, 1 / 6]]
    ref = np.array([[0, 1], [2, 1]])
    (n1, t1), (n2, t2) = class_targets(ref, "mammo", ["malignant", "benign"])
    assert (n1, t1.tolist(), n2, t2.tolist()) == (
        "malignant",
        [[False, True], [False, True]],
        "benign",
        [[False, False], [True, False]],
    )
    stack = np.zeros((10, 2, 2), np.uint8)
    stack[2, 0, 0] = 1
    ((name, tgt),) = class_targets(stack, "xray", ["cardiomegaly"])
    assert name == "cardiomegaly" and tgt.sum() == 1
    assert math.isclose(class_targets(ref, "mammo", [])[0][1].mean(), 0.75)


def test_evaluation_uncertainty_places_maps_by_grid():
    """A coarse map sits on its Grid (as in evaluate), not stretched over the image.

    12 x 12 image, attention on 5-px tiles (Grid.downsampled(5)): its 2 x 2 cells cover
    pixels 0..10 only; pixels 10, 11 lie outside it. p = 1 on 0..10, 0 elsewhere: the
    maps agree everywhere attention exists (score 0). Stretched, attention would cover
    the last 2 rows/cols and disagree there (44 of 144 px).
    """
    from napari_wsseg.methods.base import Grid

    p = np.zeros((12, 12))
    p[:10, :10] = 1.0
    maps = Maps(
        maps={"mask_prob": p, "attention": np.ones((2, 2))},
        grids={"attention": Grid.downsampled((5, 5))},
        mask="mask_prob",
    )
    for shape in (None, (12, 12)):
        got = uncertainty_score(maps, image_shape=shape)
        assert got["score"] == 0.0 and got["disagreement"] == 0.0
        assert got["salient_fraction"] == pytest.approx(100 / 144)
    stretched = uncertainty_score(Maps(maps={"mask_prob": p, "attention": np.ones((2, 2))}))
    assert stretched["disagreement"] == pytest.approx(44 / 144)


def test_evaluation_uncertainty_coarse_p_with_gridless_map():
    """p on tiles (Grid.downsampled(5), 12 px image); a gridless map spans the image.

    p's cell j reads image pixel 5j + 2; a gridless 6 x 6 map is stretched over the
    12 px image (pixel y reads it at (y + 0.5) / 2 - 0.5), so cell (1, 1) reads it at
    (3.25, 3.25): between cells 3 and 4, both 1 -> |1 - 0| = 1 at (1, 1).
    """
    from napari_wsseg.methods.base import Grid

    p = np.array([[0.5, 0.0], [0.0, 0.0]])
    att = np.zeros((6, 6))
    att[:2, :2] = 0.5  # image pixels 0..3: cell (0, 0) reads att at (0.75, 0.75)
    att[3:5, 3:5] = 1.0
    maps = Maps(
        maps={"mask_prob": p, "attention": att},
        grids={"mask_prob": Grid.downsampled((5, 5))},
        mask="mask_prob",
    )
    got = uncertainty_score(maps, image_shape=(12, 12))
    # R = {(0, 0), (1, 1)}: H(0.5) = 1, H(0) = 0; |0.5 - 0.5| = 0, |1 - 0| = 1
    assert got["entropy"] == pytest.approx(0.5)
    assert got["disagreement"] == pytest.approx(0.5)
    assert got["salient_fraction"] == 0.5


def test_evaluation_uncertainty_ignores_invalid_tiles():
    """Tiles outside ``Maps.valid`` (background the tiler dropped) are never uncertain."""
    p = np.array([[0.9, 0.5], [0.5, 0.0]])  # 0.5: placeholders on dropped tiles
    valid = np.array([[True, False], [False, False]])
    got = uncertainty_score(
        Maps(maps={"mask_prob": p}, mask="mask_prob", valid={"mask_prob": valid})
    )
    h9 = float(binary_entropy(np.array(0.9)))
    assert got["entropy"] == pytest.approx(h9) and got["score"] == pytest.approx(h9)
    assert got["salient_fraction"] == 1.0  # of the valid tiles
    unmasked = uncertainty_score(Maps(maps={"mask_prob": p}, mask="mask_prob"))
    assert unmasked["entropy"] == pytest.approx((h9 + 2) / 3)

    # another map's invalid tile neither makes a pixel salient nor disagrees
    p = np.array([[0.9, 0.0], [0.0, 0.0]])
    att = np.array([[0.9, 0.0], [0.0, 0.6]])
    att_valid = np.array([[True, True], [True, False]])
    maps = Maps(
        maps={"mask_prob": p, "attention": att}, mask="mask_prob", valid={"attention": att_valid}
    )
    got = uncertainty_score(maps)
    assert got["entropy"] == pytest.approx(h9) and got["disagreement"] == 0.0
    maps.valid = {"attention": np.ones((3, 3), bool)}
    with pytest.raises(ValueError, match="attention"):
        uncertainty_score(maps)
