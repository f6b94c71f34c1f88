"""GLAM (Liu et al. 2022) local-module pieces against hand computations: gated attention
(Sec. 3.2 / Ilse et al. eq. 9), attention and concatenation aggregation (Sec. 3.2, App. C),
the fusion module's L_f (Sec. 3.2 / eq. 4-5 of the joint stage) and random negative patches
(Sec. 3.3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_wsseg.methods.glam.method import GLAMConfig
from napari_wsseg.methods.glam.model import GLAMModel
from napari_wsseg.methods.glam.nets import GatedAttention
from napari_wsseg.methods.glam.patches import random_positions

TINY = dict(
    image_size=(128, 96),
    patch_size=32,
    global_widths=(4, 8, 8, 16, 16),
    local_widths=(4, 8),
    local_blocks=(1, 1),
    attention_hidden=2,
    k_train=2,
    local_top_t=50.0,
)


pytestmark = pytest.mark.usefixtures("seeded_one_thread")  # tests/methods/conftest.py


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _set_gated(att: GatedAttention) -> None:
    """V = [[1, 0], [0, 1]], U = [[0, 0], [1, 1]], w = (1, -1), no biases."""
    with torch.no_grad():
        att.v.weight.copy_(torch.eye(2))
        att.v.bias.zero_()
        att.u.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
        att.u.bias.zero_()
        att.w.weight.copy_(torch.tensor([[1.0, -1.0]]))
        att.w.bias.zero_()


def test_gated_attention_ilse_eq9_hand_computation():
    """a_k = w^T (tanh(V z_k) * sigmoid(U z_k)), alpha = softmax_k(a_k)."""
    att = GatedAttention(2, hidden=2)
    _set_gated(att)
    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]])
    a = []
    for z1, z2 in z[0].tolist():
        gate = (_sig(0.0), _sig(z1 + z2))
        a.append(math.tanh(z1) * gate[0] - math.tanh(z2) * gate[1])
    e = np.exp(np.array(a) - max(a))
    expect = e / e.sum()
    np.testing.assert_allclose(att(z)[0].detach().numpy(), expect, rtol=1e-6)


def test_attention_aggregation_weights_patch_predictions_and_features():
    """Sec. 3.2: y_l = sum_k alpha_k y_k (y_k: top-t% pooling of A_k), z_l = sum_k alpha_k z_k."""
    model = GLAMModel(GLAMConfig(**TINY))
    # A 2-dim attention over 2-dim patch features: rebuild the module at that size.
    model.attention = GatedAttention(2, hidden=2)
    _set_gated(model.attention)
    maps = torch.zeros(1, 2, 2, 2, 2)  # (B, K, C, m, m)
    maps[0, 0, 0] = torch.tensor([[0.9, 0.1], [0.3, 0.5]])  # top 50% of 4 = 2: (0.9+0.5)/2
    maps[0, 1, 0] = torch.tensor([[0.2, 0.2], [0.2, 0.6]])  # (0.6+0.2)/2
    maps[0, 0, 1] = 0.1
    maps[0, 1, 1] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # (1+0)/2
    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    y_l, z_l, alpha = model.aggregate_attention(maps, z)
    a0 = math.tanh(1.0) * 0.5
    a1 = -math.tanh(2.0) * _sig(2.0)
    w0 = math.exp(a0) / (math.exp(a0) + math.exp(a1))
    w1 = 1 - w0
    assert alpha[0].tolist() == pytest.approx([w0, w1], rel=1e-6)
    y_k = np.array([[0.7, 0.1], [0.4, 0.5]])
    np.testing.assert_allclose(y_l[0].detach().numpy(), w0 * y_k[0] + w1 * y_k[1], rtol=1e-6)
    np.testing.assert_allclose(z_l[0].detach().numpy(), [w0 * 1.0, w1 * 2.0], rtol=1e-6)


def test_concatenation_aggregation_pools_over_all_patches_at_once():
    """App. C / local stage: the K maps side by side, one top-t% pooling over K*m*m values."""
    model = GLAMModel(GLAMConfig(**{**TINY, "local_top_t": 25.0}))
    maps = torch.zeros(1, 2, 2, 2, 2)
    maps[0, 0, 0] = torch.tensor([[0.9, 0.1], [0.3, 0.5]])
    maps[0, 1, 0] = torch.tensor([[0.2, 0.2], [0.2, 0.6]])
    maps[0, 1, 1] = torch.tensor([[1.0, 0.0], [0.0, 0.8]])
    y = model.aggregate_concat(maps)
    # 8 values per class, top 25% = 2: class 0 -> (0.9 + 0.6)/2, class 1 -> (1.0 + 0.8)/2.
    assert y[0].tolist() == pytest.approx([0.75, 0.9])
    # Not the mean of per-patch poolings ((0.9 + 0.5)/2 and (0.6 + 0.2)/2 -> 0.55).
    assert float(y[0, 0]) != pytest.approx(0.55)


def test_fusion_loss_is_bce_of_linear_layer_on_concatenated_representations(monkeypatch):
    """Joint stage: y_f = sigmoid(W [z_g ; z_l] + b), L_f = BCE(y, y_f), total L_g + L_l + L_f."""
    cfg = GLAMConfig(**TINY, l1_weight=0.0)
    model = GLAMModel(cfg)
    z_g = torch.tensor([[0.5] * 16])
    local_maps = torch.full((1, 2, 2, 8, 8), 0.25)
    z_k = torch.tensor([[[1.0] * 8, [3.0] * 8]])
    with torch.no_grad():
        model.fusion.weight.zero_()
        model.fusion.weight[0, :16] = 0.1  # class 0 reads z_g
        model.fusion.weight[1, 16:] = -0.2  # class 1 reads z_l
        model.fusion.bias.copy_(torch.tensor([0.3, 0.0]))
        for p in model.attention.parameters():
            p.zero_()  # equal attention: z_l = mean of z_k = 2
    g_maps = [torch.full((1, 2, 2, 2), 0.5)] * 3

    def fake_global(x):
        return {"maps": g_maps, "y_n": [torch.full((1, 2), 0.5)] * 3,
                "y_g": torch.full((1, 2), 0.5), "s_g": g_maps[0], "z": z_g}  # fmt: skip

    monkeypatch.setattr(model, "global_out", fake_global)
    monkeypatch.setattr(model, "local_out", lambda x, pos: {"maps": local_maps, "z": z_k})
    batch = {"image": torch.zeros(1, 1, 128, 96), "label": torch.tensor([[1.0, 0.0]])}
    out = model(batch, stage="joint")
    yf = [_sig(0.1 * 0.5 * 16 + 0.3), _sig(-0.2 * 2.0 * 8)]
    l_f = (-math.log(yf[0]) - math.log(1 - yf[1])) / 2
    assert float(out["l_f"]) == pytest.approx(l_f, rel=1e-5)
    l_g = 3 * (-math.log(0.5))  # three scales, BCE 0.5 against either label
    l_l = -(math.log(0.25) + math.log(0.75)) / 2
    assert float(out["l_g"]) == pytest.approx(l_g, rel=1e-5)
    assert float(out["l_l"]) == pytest.approx(l_l, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(l_g + l_l + l_f, rel=1e-5)


def test_random_negative_patches_are_uniform_inside_and_aligned():
    """Sec. 3.3: negative images get k random patches, inside the image, on the stride grid,
    covering the whole range of corners."""
    g = torch.Generator().manual_seed(0)
    pos = random_positions(400, 3, (128, 96), 32, align=4, generator=g)
    assert pos.shape == (400, 3, 2)
    assert int(pos.min()) >= 0 and int(pos[..., 0].max()) <= 96 and int(pos[..., 1].max()) <= 64
    assert bool((pos % 4 == 0).all())
    ys = torch.bincount(pos[..., 0].flatten() // 4, minlength=25)
    assert int((ys > 0).sum()) == 25  # every aligned row 0..96 is drawn
    # Uniform: the mean corner is near the middle of the allowed range.
    assert float(pos[..., 0].float().mean()) == pytest.approx(48 - 1.5, abs=4)


def test_positions_use_algorithm1_for_positives_and_random_for_negatives():
    """model.positions: a positive image keeps Algorithm 1's patch on the salient spot; a
    negative image's patches are random, drawn independently of its saliency."""
    model = GLAMModel(GLAMConfig(**TINY))
    s_g = torch.zeros(2, 2, 16, 12)
    s_g[:, 0, 12:14, 8:10] = 1.0  # hot spot at image pixels (96..112, 64..80)
    x = torch.zeros(2, 1, 128, 96)
    torch.manual_seed(3)
    picks = [model.positions(s_g, x, 1, torch.tensor([True, False])) for _ in range(20)]
    pos_pos = {tuple(p[0, 0].tolist()) for p in picks}
    neg_pos = {tuple(p[1, 0].tolist()) for p in picks}
    assert len(pos_pos) == 1
    (py, px) = pos_pos.pop()
    assert py <= 96 < py + 32 and px <= 64 < px + 32
    assert len(neg_pos) > 5  # random, not the salient window
    assert all(0 <= y <= 96 and 0 <= x <= 64 and y % 4 == 0 == x % 4 for y, x in neg_pos)
