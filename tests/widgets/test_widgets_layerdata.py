"""Maps -> napari layer data, headless: alignment, thresholds, mask formats."""

import numpy as np
import pytest

from napari_wsseg.io.base import ImageData
from napari_wsseg.methods.base import Grid, Maps
from napari_wsseg.widgets._layerdata import (
    box_layer,
    layer_to_mask,
    map_layers,
    mask_to_layer,
    placement,
    threshold_mask,
)


def _slide(shape=(1024, 2048), mpp=0.5):
    return ImageData(
        data=[np.zeros((*shape, 3), np.uint8)],
        modality="slide",
        scale=(mpp, mpp),
        translate=(10.0, 20.0),
        rgb=True,
        multiscale=True,
    )


def test_tile_map_centres_land_on_tile_centres():
    """A tile map (one pixel per 32x32 tile) puts pixel (i, j) at the tile's centre."""
    image = _slide()
    grid = Grid.downsampled((32, 32))
    scale, translate = placement(image, grid.scale, grid.translate)
    assert scale == (16.0, 16.0)  # 32 px * 0.5 um
    i, j = 3, 5
    centre_world = (translate[0] + i * scale[0], translate[1] + j * scale[1])
    # the tile covers level-0 pixels [96, 128) x [160, 192): centre 111.5, 175.5
    assert np.allclose(centre_world, (10 + 111.5 * 0.5, 20 + 175.5 * 0.5))


def test_map_layers_names_scales_and_class_axis():
    image = ImageData(data=np.zeros((40, 60), np.uint16), modality="mammo", scale=(0.07, 0.07))
    maps = Maps(
        maps={"glam_global": np.random.rand(2, 10, 15), "mask_prob": np.random.rand(40, 60)},
        grids={"glam_global": Grid.downsampled((4, 4))},
        classes={"glam_global": ["malignant", "benign"]},
    )
    layers = {kw["name"]: (d, kw) for d, kw, kind in map_layers(maps, image, "glam", "s#1")}
    d, kw = layers["glam_global [glam]"]
    assert d.shape == (2, 10, 15)
    assert np.allclose(kw["scale"], (1.0, 0.28, 0.28))
    assert np.allclose(kw["translate"], (0.0, 1.5 * 0.07, 1.5 * 0.07))
    assert kw["metadata"]["classes"] == ["malignant", "benign"]
    # saliency: its median is the transparent low end; probabilities keep (0, 1)
    glob = maps.maps["glam_global"]
    above = glob[glob > glob.min()]
    assert kw["contrast_limits"] == pytest.approx((np.median(above), glob.max()), rel=1e-5)
    assert kw["blending"] == "translucent"
    prob_kw = layers["mask_prob [glam]"][1]
    assert prob_kw["contrast_limits"] == (0.0, 1.0)
    assert np.allclose(prob_kw["scale"], (0.07, 0.07))


def test_map_colormaps_draw_nothing_below_the_cut():
    """Issue 13: Grad-CAM at 0.54-0.63 outside the findings turned a chest yellow.
    The low end of every map colormap is transparent, and a saliency map's
    background level (its median) is that low end."""
    from napari_wsseg.widgets._layerdata import CUT, map_limits

    image = ImageData(data=np.zeros((32, 32), np.uint16), modality="xray", scale=(1.0, 1.0))
    cam = (0.54 + 0.09 * np.random.default_rng(0).random((32, 32))).astype(np.float32)
    cam[4:8, 4:8] = 0.95  # one finding
    maps = Maps(maps={"gradcam": cam})
    ((_d, kw, _k),) = map_layers(maps, image, "chexseg", "s#1")
    lo, hi = kw["contrast_limits"]
    assert 0.57 < lo < 0.60 and hi == pytest.approx(0.95)  # the 0.54-0.63 level is clear
    cmap = kw["colormap"]
    alpha = cmap.map(np.array([0.0, CUT * 0.9, 0.6, 1.0]))[:, 3]
    assert alpha[0] == 0 and alpha[1] == 0 and 0 < alpha[2] < alpha[3] == 1.0
    # a flat map still gets a valid range
    assert map_limits("attention", np.zeros((4, 4)))[1] > 0


def test_threshold_label_image_and_stack():
    prob = np.array([[[0.9, 0.2], [0.1, 0.6]], [[0.7, 0.8], [0.2, 0.3]]])
    label = threshold_mask(prob, 0.5, ["malignant", "benign"])
    assert label.tolist() == [[1, 2], [0, 1]]
    stack = threshold_mask(prob, 0.5, ["a", "b"], stack=True)
    assert stack[:, 0, 0].tolist() == [1, 2] and stack[:, 1, 0].tolist() == [0, 0]
    assert threshold_mask(np.array([0.2, 0.5, 0.8]), 0.5).tolist() == [0, 1, 1]


def test_xray_mask_roundtrip_keeps_overlaps():
    stored = np.zeros((10, 4, 4), np.uint8)
    stored[2, :2] = 1
    stored[9, 1:3] = 1  # overlaps class 2 on row 1
    shown = mask_to_layer(stored, "xray")
    assert shown[2, 0, 0] == 3 and shown[9, 1, 0] == 10
    assert np.array_equal(layer_to_mask(shown, "xray"), stored)


def test_boxes_become_rectangles():
    image = ImageData(data=np.zeros((100, 80)), modality="mammo", scale=(0.5, 0.5))
    maps = Maps(boxes=np.array([[10, 20, 30, 50]]), box_labels=["malignant"])
    rects, kw, kind = box_layer(maps, image, "glam", "s#1")
    assert kind == "shapes" and kw["shape_type"] == "rectangle"
    assert rects[0].min(axis=0).tolist() == [10, 20] and rects[0].max(axis=0).tolist() == [30, 50]
    assert kw["scale"] == (0.5, 0.5)
