"""Saliency maps: Grad-CAM family against MONAI and hand computations, 2D and 3D."""

from __future__ import annotations

import copy
import gc

import numpy as np
import pytest
import torch
from torch import nn

from napari_wsseg.methods.saliency import (
    METHODS,
    default_target_layer,
    explain,
    layer_grid,
    normalize_maps,
    saliency_maps,
    upsample_maps,
    window_grid,
)


class Tiny(nn.Module):
    """conv -> relu (target 'act') -> 1x1 conv -> relu -> GAP -> linear.

    The head's 1x1 conv + relu makes dy/dA vary over space, so the Grad-CAM variants
    differ from each other (with a pure GAP head every gradient is constant).
    """

    def __init__(self, dims: int = 2, c: int = 3, classes: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv = conv(1, c, 3, padding=1)
        self.act = nn.ReLU()
        self.mix = conv(c, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(4, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.mix(a))).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyGAP(nn.Module):
    """conv -> relu -> GAP -> linear: a CAM-able model."""

    def __init__(self, c: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(x)).flatten(1))


def _hand(model: Tiny, x: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Activation A and dy_k/dA from plain autograd on the split model (batch 0)."""
    a = model.features(x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.head(a)[:, k].sum(), a)
    return a[0].detach().double().numpy(), g[0].double().numpy()


def _relu(v):
    return np.maximum(v, 0.0)


def _hand_map(method: str, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Each method's formula written with explicit loops over channels k."""
    c = a.shape[0]
    out = np.zeros(a.shape[1:])
    for k in range(c):
        if method == "gradcam":  # Grad-CAM eq. (1)-(2) of the CheXseg appendix
            out += g[k].mean() * a[k]
        elif method == "gradcampp":  # Grad-CAM++ eq. 19 and the weight of eq. 10
            den = 2 * g[k] ** 2 + a[k].sum() * g[k] ** 3
            alpha = np.where(den != 0, g[k] ** 2 / np.where(den != 0, den, 1), 0)
            out += (alpha * _relu(g[k])).sum() * a[k]
        elif method == "layercam":
            out += _relu(g[k]) * a[k]
        elif method == "hirescam":
            out += g[k] * a[k]
        elif method == "xgradcam":
            out += (g[k] * a[k]).sum() / a[k].sum() * a[k]
    return _relu(out)


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "layercam", "hirescam", "xgradcam"])
def test_saliency_methods_match_hand_formulas(method):
    torch.manual_seed(1)
    model = Tiny().double()
    x = torch.randn(1, 1, 6, 7, dtype=torch.double)
    for k in range(2):
        a, g = _hand(model, x, k)
        assert np.ptp(g) > 0  # gradients vary over space: the methods really differ
        ours = explain(model, x, method, "act", [k], normalize=False, upsample=False).maps
        np.testing.assert_allclose(ours[0, 0].numpy(), _hand_map(method, a, g), atol=1e-10)


def test_gradcam_equals_monai_and_autograd_on_densenet121():
    """Issue check: max abs diff <= 1e-4 after the same normalisation."""
    from monai.networks.nets import DenseNet121
    from monai.visualize import GradCAM

    torch.manual_seed(0)
    net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=4).eval()
    x = torch.randn(1, 1, 64, 64)
    layer = default_target_layer(net)
    assert layer == "class_layers.relu"
    ours = saliency_maps(net, x, "gradcam", classes=[0, 2])
    for i, k in enumerate([0, 2]):
        monai_cam = GradCAM(copy.deepcopy(net), layer, postprocessing=normalize_maps)
        assert (ours[:, i : i + 1] - monai_cam(x, class_idx=k)).abs().max() <= 1e-4
        # hand: autograd through features -> relu -> pool -> linear
        a = torch.relu(net.features(x)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net.class_layers.out(a.mean((2, 3)))[:, k].sum(), a)
        hand = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True)).detach()
        hand = normalize_maps(upsample_maps(hand, x.shape[2:]))
        assert (ours[:, i : i + 1] - hand).abs().max() <= 1e-4
    # DESIGN.md erratum: MONAI's default normaliser inverts the map (max -> 0)
    inverted = GradCAM(copy.deepcopy(net), layer)(x, class_idx=0)
    assert (inverted - (1 - ours[:, :1])).abs().max() <= 1e-4


def test_cam_is_fc_weighted_activation_and_hot_region_is_high():
    torch.manual_seed(2)
    model = TinyGAP()
    x = torch.rand(2, 1, 8, 8)
    raw = explain(model, x, "cam", "body.1", [1], normalize=False, upsample=False).maps
    a = model.body(x).detach()
    hand = torch.einsum("c,bcyx->byx", model.fc.weight[1].detach(), a)
    assert torch.allclose(raw[:, 0], hand, atol=1e-6)
    # a single-channel identity net: class score = mean intensity; hot square must be high
    ident = TinyGAP(c=1, classes=1)
    with torch.no_grad():
        ident.body[0].weight.zero_()
        ident.body[0].weight[0, 0, 1, 1] = 1.0
        ident.body[0].bias.zero_()
        ident.fc.weight.fill_(1.0)
    img = torch.zeros(1, 1, 16, 16)
    img[..., 4:8, 10:14] = 1.0
    for method in METHODS:
        m = saliency_maps(ident, img, method, "body.1")[0, 0]
        assert m[4:8, 10:14].min() > 0.99 and m[12:, :4].max() < 0.01, method


def test_3d_input_maps_on_input_grid_and_match_hand():
    torch.manual_seed(3)
    model = Tiny(dims=3)
    x = torch.randn(2, 1, 4, 5, 6)
    maps = saliency_maps(model, x, "gradcam", "act")
    assert maps.shape == (2, 2, 4, 5, 6)
    assert maps.min() >= 0 and maps.max() <= 1
    a = model.features(x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.head(a)[:, 1].sum(), a)
    hand = torch.relu((g.mean((2, 3, 4), keepdim=True) * a).sum(1)).detach()
    assert torch.allclose(maps[:, 1], normalize_maps(hand[:, None])[:, 0], atol=1e-5)


def test_gradcam_upsamples_low_resolution_layer_to_input_grid():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3),
    )
    assert default_target_layer(net) == "1"
    maps = saliency_maps(net, torch.randn(3, 1, 10, 12), classes=[2, 0])
    assert maps.shape == (3, 2, 10, 12)


def _hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def test_no_hook_leak_after_100_explanations():
    torch.manual_seed(4)
    model = Tiny().train()
    x = torch.randn(2, 1, 8, 8)
    saliency_maps(model, x, "gradcampp", "act")
    gc.collect()
    n_tensors = sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())
    for i in range(100):
        saliency_maps(model, x, METHODS[i % len(METHODS)] if i % 6 != 5 else "gradcam", "act")
    gc.collect()
    assert _hook_count(model) == 0
    assert sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()) <= n_tensors
    assert model.training and torch.is_grad_enabled()
    assert all(p.grad is None for p in model.parameters())
    # hooks also go when the forward raises
    with pytest.raises(RuntimeError):
        saliency_maps(model, torch.randn(1, 2, 8, 8), "gradcam", "act")
    assert _hook_count(model) == 0


def test_saliency_works_under_outer_no_grad_and_errors_are_clear():
    model = Tiny()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        inner = saliency_maps(model, x, "gradcam", "act")
    assert torch.allclose(inner, saliency_maps(model, x, "gradcam", "act"))
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        saliency_maps(model, x, target_layer="nope")
    with pytest.raises(ValueError, match="out of range"):
        saliency_maps(model, x, target_layer="act", classes=[5])
    with pytest.raises(ValueError, match="unknown saliency method"):
        saliency_maps(model, x, method="gradcam3")


class Strided(nn.Module):
    """1x1 conv with stride 2 (cell i = input pixel 2i exactly) -> relu 'act' -> GAP -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, stride=2, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_window_grid_and_layer_grid_hand():
    """Cell i of a layer is centred on stride*i + dilation*(k-1)/2 - padding."""
    assert window_grid(nn.Conv2d(1, 1, 3, stride=2, padding=1), 2) == ((2.0, 0.0),) * 2
    assert window_grid(nn.AvgPool2d(2), 2) == ((2.0, 0.5),) * 2
    assert window_grid(nn.MaxPool2d(3, 2, 1), 2) == ((2.0, 0.0),) * 2
    assert window_grid(nn.Conv2d(1, 1, 3, padding=0, dilation=2), 2) == ((1.0, 2.0),) * 2
    assert window_grid(nn.Conv2d(1, 1, (1, 3), stride=(1, 2)), 2) == ((1.0, 0.0), (2.0, 1.0))
    # two 3x3/s2/p1 convs: cell i on 4i; then a 2x2 average pool: on 8i + 0 + 4 * 0.5
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 3, 2, 1), nn.AvgPool2d(2)
    )
    x = torch.randn(1, 1, 32, 32)
    assert layer_grid(net, x, "2") == ((4.0, 0.0),) * 2
    assert layer_grid(net, x, "3") == ((8.0, 2.0),) * 2

    # a geometry the hooks cannot see (functional pooling) gives None, not a guess
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(torch.nn.functional.avg_pool2d(x, 2))

    assert layer_grid(Functional(), x, "conv") is None


def test_upsample_on_grid_hand_and_equals_interpolate_on_its_own_grid():
    m = torch.zeros(1, 1, 1, 4)
    m[..., 1] = 1.0  # cell 1
    # grid (2, 0): cell 1 sits on pixel 2, halfway to its neighbours at pixels 0 and 4
    up = upsample_maps(m, (1, 8), ((1.0, 0.0), (2.0, 0.0)))[0, 0, 0]
    np.testing.assert_allclose(up.numpy(), [0, 0.5, 1, 0.5, 0, 0, 0, 0])
    # interpolate(align_corners=False) puts cell 1 on pixel 2.5 (a half-pixel shift)
    old = upsample_maps(m, (1, 8))[0, 0, 0]
    np.testing.assert_allclose(old.numpy(), [0, 0.25, 0.75, 0.75, 0.25, 0, 0, 0])
    # interpolate is the special case offset = (stride - 1) / 2, also in 3D
    v = torch.rand(2, 3, 4, 5, 6)
    grid = ((4.0, 1.5), (2.0, 0.5), (3.0, 1.0))
    ref = upsample_maps(v, (16, 10, 18))
    assert (upsample_maps(v, (16, 10, 18), grid) - ref).abs().max() < 1e-6


@pytest.mark.parametrize("pixel", [2, 4])  # interior cells (the last clamps)
def test_gradcam_peak_sits_on_the_evidence_with_receptive_field_align(pixel):
    """The evidence at input pixel p (even) lands in cell p/2; the aligned map peaks at
    p exactly. MONAI's convention splits the peak over p and p + 1."""
    x = torch.zeros(1, 1, 1, 8)
    x[..., pixel] = 1.0
    model = Strided()
    kw = {"target_layer": "act", "normalize": False}
    aligned = explain(model, x, align="receptive_field", **kw).maps[0, 0, 0]
    # act = x[..., ::2]; dy/dA = 1/4 (mean over 4 cells) -> map 0.25 at cell p/2
    assert int(aligned.argmax()) == pixel and float(aligned[pixel]) == pytest.approx(0.25)
    assert float(aligned[pixel - 1]) == float(aligned[pixel + 1]) == pytest.approx(0.125)
    old = explain(model, x, **kw).maps[0, 0, 0]
    assert float(old[pixel]) == pytest.approx(float(old[pixel + 1]))
    with pytest.raises(ValueError, match="align"):
        explain(model, x, align="corners")
