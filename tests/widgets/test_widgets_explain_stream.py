"""Explain on a streamed slide: the heatmap fills in as blocks finish; cancel keeps it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_wsseg.io import open_slide
from napari_wsseg.methods.distill.method import DistillConfig, DistillToLabel
from napari_wsseg.methods.progress import reporting
from napari_wsseg.phantoms.wsi import write_wsi
from napari_wsseg.widgets import _live
from napari_wsseg.widgets._layerdata import MAP_KEY

SMALL = {"channels": (4, 8), "hidden": 16, "feat_dim": 8, "attn_dim": 4, "predict_batch": 64}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("wsi") / "s.ome.tif"
    write_wsi(path, (2048, 2048), seed=5, tissue=0.3, tumour=0.1, bank=2)
    return open_slide(path)


def test_partial_heatmap_is_one_layer_refreshed_in_place_and_cancel_keeps_it(
    make_napari_viewer, slide
):
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    viewer.add_image(slide.data, rgb=True, multiscale=True, name="slide")
    method = DistillToLabel(DistillConfig(**SMALL))
    model = method.build_model()
    case = {"study": "s", "image_id": 1, "image": slide}
    live = _live.LiveRun()
    filled: list[int] = []

    def on(p, partial) -> None:  # what the dock's timer does, here after every block
        live(p, partial)
        assert _live.show_partial(viewer, live, "distill", case)
        layers = [ly for ly in viewer.layers if _live.PARTIAL_KEY in ly.metadata]
        assert len(layers) == 1 and MAP_KEY in layers[0].metadata
        assert np.shares_memory(layers[0].data, partial.maps["instance_prob"])
        filled.append(int((layers[0].data > 0).sum()))
        assert "tiles/s" in _live.progress_text(p)
        if len(filled) == 3:
            live.cancel()

    with reporting(on, cancel=live.cancelled, min_interval=0.0):
        maps = method.predict(model, slide)
    assert len(filled) >= 3 and filled == sorted(filled) and filled[0] < filled[-1]
    assert live.streaming and live.progress.cancelled
    done = maps.valid["instance_prob"]
    assert 0 < done.sum() < (maps.maps["attention"].shape[0] * maps.maps["attention"].shape[1])
    assert np.count_nonzero(maps.maps["instance_prob"]) == done.sum()
    layer = next(ly for ly in viewer.layers if _live.PARTIAL_KEY in ly.metadata)
    assert layer.contrast_limits == [0.0, 1.0] and layer.visible
    # a new run's maps replace the layer of a superseded run instead of refreshing it
    again = _live.LiveRun()
    with reporting(again, cancel=lambda: again.progress is not None, min_interval=0.0):
        method.predict(model, slide)
    assert _live.show_partial(viewer, again, "distill", case)
    layers = [ly for ly in viewer.layers if _live.PARTIAL_KEY in ly.metadata]
    assert len(layers) == 1 and layers[0].data is again.partial.maps["instance_prob"]
