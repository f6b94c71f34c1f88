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
