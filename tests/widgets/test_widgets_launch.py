"""``make run``'s window: the plugin docked, the sample study open, and overlays of the
shipped default model on the first case without pressing anything."""

from __future__ import annotations

import shutil

from napari_wsseg.training.defaults import install_default_models
from napari_wsseg.widgets import _case
from napari_wsseg.widgets._layerdata import MAP_KEY


def test_launch_opens_the_study_and_shows_default_overlays(demo_study, tmp_path, qtbot):
    from napari_wsseg.launch import launch

    root = tmp_path / "study"
    shutil.copytree(demo_study.root, root)
    install_default_models(root)
    viewer = launch(str(root), run=False)
    try:
        docks = dict(viewer.window.dock_widgets)
        assert {"Study browser", "Explain", "Correct mask", "Retrain"} <= {
            name.split(" (")[0] for name in docks
        }
        case = _case.current_case(viewer)
        assert case is not None and case["modality"] == "ct"

        def maps():
            return {ly.metadata[MAP_KEY] for ly in viewer.layers if MAP_KEY in ly.metadata}

        qtbot.waitUntil(lambda: {"attention", "local", "mask_prob"} <= maps(), timeout=120_000)
        image = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
        for ly in viewer.layers:
            if MAP_KEY in ly.metadata:
                assert ly.data.shape == image.data.shape  # CT maps are volumes on the volume
                assert tuple(ly.scale) == tuple(image.scale)
                assert ly.metadata["wsseg_method"] == "iagnet"
        # ct_000 has an expert mask: it stays in the Labels layer, the default version's
        # prediction gets a layer of its own
        mask = _case.mask_layer(viewer)
        assert mask is not None and mask.metadata["wsseg_source"] == "expert"
        pred = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_prediction"))
        assert pred.data.shape == image.data.shape
        assert pred.metadata["wsseg_model"].endswith("iagnet/v001")
        # the next case gets its own overlays: the first case's maps go with its image
        browser = next(w for n, w in docks.items() if n.startswith("Study browser"))
        first = case["image_id"]
        browser.step(1)
        qtbot.waitUntil(lambda: browser.current_id != first, timeout=10_000)
        assert _case.current_case(viewer)["image_id"] != first
        assert not maps()
        qtbot.waitUntil(lambda: {"attention", "local", "mask_prob"} <= maps(), timeout=120_000)
    finally:
        viewer.close()
