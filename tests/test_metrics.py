"""Every metric against scikit-learn or a hand computation, empty masks included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from napari_wsseg import metrics as M

P = np.array([[0.9, 0.6, 0.2], [0.4, 0.8, 0.1]])
G = np.array([[1, 0, 0], [1, 1, 0]])


def test_evaluation_dice_hard_by_hand():
    # at 0.5: pred = {(0,0),(0,1),(1,1)}; |P∩G| = 2, |P| = 3, |G| = 3 -> 4/6
    assert M.dice_hard(P, G) == pytest.approx(4 / 6)
    assert M.dice_hard(P, G, threshold=0.85) == pytest.approx(2 * 1 / (1 + 3))
    zero = np.zeros((2, 3))
    assert M.dice_hard(zero, zero) == 1.0  # both empty
    assert M.dice_hard(zero, G) == 0.0 and M.dice_hard(P, zero) == 0.0  # only one empty


def test_evaluation_dice_soft_glam_appendix_e():
    # GLAM App. E: 2 sum(S G) / (sum S^2 + sum G^2)
    num = 2 * (0.9 + 0.4 + 0.8)
    sq = (P**2).sum() + 3
    assert M.dice_soft(P, G) == pytest.approx(num / sq)
    assert M.dice_soft(P, G, squared=False) == pytest.approx(num / (P.sum() + 3))
    zero = np.zeros((2, 3))
    assert M.dice_soft(zero, zero) == 1.0 and M.dice_soft(zero, G) == 0.0


def test_evaluation_iou_and_miou_match_sklearn():
    pred = P >= 0.5
    assert M.iou(pred, G) == pytest.approx(jaccard_score(G.ravel(), pred.ravel()))
    assert M.iou(np.zeros(4), np.zeros(4)) == 1.0 and M.iou(np.ones(4), np.zeros(4)) == 0.0
    a = np.array([0, 1, 1, 2, 2, 0, 1])
    b = np.array([0, 1, 2, 2, 2, 1, 1])
    ref = jaccard_score(b, a, labels=[1, 2], average="macro")
    assert M.miou(a, b, classes=[1, 2]) == pytest.approx(ref)
    # class 3 absent from both: skipped, not counted as 0 or 1
    assert M.miou(a, b, classes=[1, 2, 3]) == pytest.approx(ref)
    assert M.miou(np.zeros(3), np.zeros(3), classes=[1]) == 1.0


def test_evaluation_pxap_by_hand_and_conventions():
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    g = np.array([1, 0, 1, 0, 0])
    # thresholds 0.9: P=1 R=.5 ; 0.8: P=.5 R=.5 ; 0.7: P=2/3 R=1 -> 1*.5 + 2/3*.5
    assert M.pxap(s, g) == pytest.approx(0.5 + (2 / 3) * 0.5)
    assert math.isnan(M.pxap(s, np.zeros(5)))  # empty ground truth: undefined
    imgs = [s, np.array([0.2, 0.9, 0.1]), np.array([0.5, 0.4])]
    gts = [g, np.array([0, 1, 0]), np.zeros(2)]
    mean, std, n = M.pxap_image_level(imgs, gts)
    assert n == 2 and mean == pytest.approx((0.5 + 1 / 3 + 1.0) / 2)
    assert std == pytest.approx(np.std([0.5 + 1 / 3, 1.0]))
    # dataset level: one curve over all pixels (the empty image's pixels included)
    pooled = np.concatenate(imgs)
    pooled_g = np.concatenate(gts)
    assert M.pxap_dataset_level(imgs, gts) == pytest.approx(M.pxap(pooled, pooled_g))
    order = np.argsort(-pooled, kind="stable")
    tp = np.cumsum(pooled_g[order])
    prec, rec = tp / np.arange(1, len(order) + 1), tp / pooled_g.sum()
    by_hand = sum(p * (r - r0) for p, r, r0 in zip(prec, rec, np.r_[0, rec[:-1]]))
    assert M.pxap_dataset_level(imgs, gts) == pytest.approx(by_hand)
    assert M.pxap_image_level([s], [np.zeros(5)])[2] == 0


def test_evaluation_auc_sens_spec():
    y = [0, 0, 1, 1, 1]
    score = [0.1, 0.6, 0.4, 0.7, 0.9]
    assert M.auc(y, score) == pytest.approx(roc_auc_score(y, score))
    # Mann-Whitney by hand: pairs (pos > neg): 0.4>0.1; 0.7, 0.9 beat both -> 5/6
    assert M.auc(y, score) == pytest.approx(5 / 6)
    assert math.isnan(M.auc([1, 1], [0.2, 0.3]))
    sens, spec = M.sensitivity_specificity(y, score)
    assert (sens, spec) == (pytest.approx(2 / 3), pytest.approx(1 / 2))
    s2, p2 = M.sensitivity_specificity([0, 0], [0.9, 0.1])
    assert math.isnan(s2) and p2 == 0.5
    c = M.classification_metrics(y, score)
    assert c["n"] == 5 and c["n_pos"] == 3 and c["auc"] == pytest.approx(5 / 6)


def test_evaluation_instance_metrics_match_sklearn():
    y = [1, 0, 1, 1, 0, 0]
    p = [0.8, 0.3, 0.4, 0.9, 0.6, 0.1]
    got = M.instance_metrics(y, p)
    pred = [int(v >= 0.5) for v in p]
    assert got["accuracy"] == pytest.approx(np.mean(np.array(pred) == np.array(y)))
    assert got["f1"] == pytest.approx(f1_score(y, pred))
    assert got["auroc"] == pytest.approx(roc_auc_score(y, p))
    none = M.instance_metrics([0, 0], [0.1, 0.2])
    assert none["f1"] == 0.0 and none["accuracy"] == 1.0 and math.isnan(none["auroc"])


def test_evaluation_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        M.dice_hard(np.zeros((2, 2)), np.zeros((3, 3)))
