"""Manifold-driven attention (Adiga et al.) against hand computations: the attention-weighted
embedding of Fig. 1 / eq. 1 (F(x) = W GAP(a * f) + b) and DCML's sub-space slicing
(Sanakoyeu et al. 2019: learner k trains only its slice of the embedding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsseg.methods.manifold import method as mf
from napari_wsseg.methods.manifold.losses import embedding_margin_loss, subspace_slices
from napari_wsseg.methods.manifold.nets import AttentiveEmbedder, TruncatedResNet

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/methods/conftest.py


def _tiny_backbone() -> TruncatedResNet:
    return TruncatedResNet(layers=(1, 1, 1), widths=(4, 4, 4), stem_stride=1, max_pool=False)


def test_attention_weighted_embedding_eq1_hand_computation():
    """Fig. 1 / eq. 1: e = W (1/mn sum_ij a_ij f_ij) + b, with a = A(f) in (0, 1)."""
    torch.manual_seed(0)
    emb = AttentiveEmbedder(_tiny_backbone(), embedding_dim=3, attention_filters=(8, 4, 1))
    emb.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        e, a = emb(x)
        f = emb.backbone(x).numpy()  # (B, c, m, n)
        att = a.numpy()
        w, b = emb.fc.weight.numpy(), emb.fc.bias.numpy()
    bsz, c, m, n = f.shape
    for i in range(bsz):
        pooled = np.zeros(c)
        for y in range(m):
            for xx in range(n):
                pooled += att[i, 0, y, xx] * f[i, :, y, xx]
        pooled /= m * n
        np.testing.assert_allclose(e[i].numpy(), w @ pooled + b, rtol=1e-4, atol=1e-5)
    # Zero attention everywhere codes every image by the bias alone: the collapse case.
    with torch.no_grad():
        emb.attention.body[-1].weight.zero_()
        emb.attention.body[-1].bias.fill_(-50.0)
        e0, a0 = emb(x)
    assert float(a0.max()) < 1e-20
    np.testing.assert_allclose(e0.numpy(), np.tile(b, (2, 1)), atol=1e-6)


def test_subspace_slices_cover_the_embedding_with_remainders():
    """DCML: K contiguous, disjoint sub-spaces covering d (K not dividing d included)."""
    for d, k in [(128, 4), (10, 3), (7, 7), (5, 1)]:
        sl = subspace_slices(d, k)
        assert len(sl) == k and sl[0].start == 0 and sl[-1].stop == d
        assert all(a.stop == b.start for a, b in zip(sl[:-1], sl[1:]))
        sizes = [s.stop - s.start for s in sl]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert [(s.start, s.stop) for s in subspace_slices(10, 3)] == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="1 <= K <= d"):
        subspace_slices(4, 5)


def test_dcml_stage_trains_each_learner_on_its_slice_only():
    """metric_dcml: a batch of learner k is scored by the margin loss of emb[:, slice_k],
    re-normalised on that slice; the gradient reaches only the rows of fc of slice k."""
    torch.manual_seed(1)
    cfg = mf.ManifoldConfig(
        layers=(1, 1, 1), widths=(4, 4, 4), stem_stride=1, max_pool=False,
        embedding_dim=6, n_learners=3, attention_filters=(8, 4, 1),
        unet_features=(4, 4, 4, 4, 4, 4),
    )  # fmt: skip
    net = mf.ManifoldNet(cfg, n_classes=2)
    assert [(s.start, s.stop) for s in net.slices] == [(0, 2), (2, 4), (4, 6)]
    img = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    batch = {"image": img, "label": labels, "learner": torch.full((8,), 1)}
    torch.manual_seed(5)
    out = net(batch, stage="metric_dcml")
    with torch.no_grad():
        emb, _ = net.embedder(mf.normalise_input(img))
    torch.manual_seed(5)
    hand, _ = embedding_margin_loss(emb[:, 2:4], labels, net.alpha, net.beta)
    assert float(out["margin"]) == pytest.approx(float(hand), rel=1e-5)
    net.zero_grad()
    out["loss"].backward()
    g = net.embedder.fc.weight.grad
    assert float(g[[0, 1, 4, 5]].abs().sum()) == 0.0
    assert float(g[2:4].abs().sum()) > 0.0


def test_class_attention_means_and_collapse_monitor():
    """Per-class mean attention by hand; the monitor warns once per stage and class, after
    its warm-up, when the moving average stays below the threshold."""
    from napari_wsseg.methods.manifold.collapse import CollapseMonitor, class_attention_means

    att = torch.zeros(4, 1, 2, 2)
    att[0] = 0.5
    att[1] = torch.tensor([[0.1, 0.3], [0.5, 0.7]])  # mean 0.4
    att[2] = 0.001
    att[3] = 0.003
    means = class_attention_means(att, torch.tensor([0, 0, 2, 2]), 3)
    assert means[0].item() == pytest.approx(0.45) and means[2].item() == pytest.approx(0.002)
    assert torch.isnan(means[1])
    mon = CollapseMonitor(threshold=0.02, momentum=0.5, min_steps=3)
    names = ("a", "b", "c")
    got = [mon.update("metric", torch.tensor([0.5, float("nan"), 0.01]), names) for _ in range(5)]
    assert [len(g) for g in got] == [0, 0, 1, 0, 0] and "'c'" in got[2][0]
    # EMA by hand: a class that dips for one batch does not trigger (0.5 -> 0.25 -> ...).
    mon2 = CollapseMonitor(threshold=0.02, momentum=0.5, min_steps=1)
    assert mon2.update("s", torch.tensor([0.5]), names) == []
    assert mon2.update("s", torch.tensor([0.0]), names) == []
    assert mon2.ema[("s", 0)] == pytest.approx(0.25)
    assert len(mon2.update("t", torch.tensor([0.0]), names)) == 1  # another stage, its own


def test_monitor_reports_attention_saturated_near_one():
    """The opposite failure: a class attended ~1 everywhere (whole-image proxy masks)."""
    from napari_wsseg.methods.manifold.collapse import CollapseMonitor

    mon = CollapseMonitor(threshold=0.02, momentum=0.5, min_steps=2)
    got = [mon.update("metric", torch.tensor([0.999, 0.5]), ("a", "b")) for _ in range(4)]
    assert [len(g) for g in got] == [0, 1, 0, 0]
    assert "saturated" in got[1][0] and "'a'" in got[1][0]
