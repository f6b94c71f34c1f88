"""Explain dock: a real model version's maps as layers on the image's grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets import _case, _display
from napari_wsseg.widgets._layerdata import MAP_KEY, background_level
from napari_wsseg.widgets.qt_explain import QtExplain
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


@pytest.fixture
def docks(make_napari_viewer, trained_copy):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    explain = QtExplain(viewer)
    browser.open_study(trained_copy)
    return viewer, browser, explain


def _run(qtbot, explain) -> None:
    explain.explain()
    assert not explain.run_btn.isEnabled()
    qtbot.waitUntil(explain.run_btn.isEnabled, timeout=60_000)
    assert not explain.probs.text().startswith("error"), explain.probs.text()


def _maps(viewer):
    return [ly for ly in viewer.layers if MAP_KEY in ly.metadata]


def test_glam_maps_boxes_and_probabilities_on_the_mammogram(docks, qtbot):
    viewer, browser, explain = docks
    rec = browser.study.images("mammo")[0]
    browser.open_image(rec.id)
    image = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
    assert explain.models.count() == 1 and explain.models.currentData()["method"] == "glam"
    assert "held-out" in explain.metrics.text()  # 2 mammograms: too few to hold one out
    _run(qtbot, explain)
    layers = {ly.metadata[MAP_KEY]: ly for ly in _maps(viewer)}
    # issue 13: a fixed order (image, maps, boxes, mask on top), the visible top layer
    # selected, the class axis named by the class on screen, a legend of the maps
    roles = [_display.role(ly) for ly in viewer.layers]
    top = "mask" if _case.mask_layer(viewer) is not None else "boxes"
    if "prediction" in roles:  # a stored mask keeps its layer; the prediction sits on top
        top = "prediction"
    assert roles[0] == "image" and roles[-1] == top and roles.index("boxes") > 1
    active = viewer.layers.selection.active
    assert active.visible and _display.role(active) in ("mask", "map")
    viewer.dims.set_current_step(0, 0)
    assert viewer.dims.axis_labels == ("class: malignant", "y", "x")
    viewer.dims.set_current_step(0, 1)
    assert viewer.dims.axis_labels[0] == "class: benign"
    shown = [ly for ly in _maps(viewer) if ly.visible and ly.metadata[MAP_KEY] != "boxes"]
    assert shown and all(ly.name in _display.text_overlay(viewer).text for ly in shown)
    assert {"glam_global", "glam_local", "glam_combined", "boxes"} <= set(layers)
    h, w = image.data.shape[-2:]
    for name in ("glam_global", "glam_local", "glam_combined"):
        ly = layers[name]
        assert ly.data.shape[0] == 2  # malignant, benign
        # saliency: drawn from its median (transparent) to its top, translucent
        lo, hi = ly.contrast_limits
        assert ly.blending == "translucent" and 0.0 <= lo < hi <= 1.0
        assert lo == pytest.approx(background_level(ly.data), abs=1e-5)
        assert hi >= ly.data.max() - 1e-6
        assert ly.colorbar.visible == ly.visible  # a colorbar on each map shown
        # the map covers the image exactly: first pixel's edge at the image's edge
        gy, gx = ly.data.shape[-2:]
        assert np.allclose(ly.scale[-2:], image.scale * np.array([h / gy, w / gx]))
        edge = ly.translate[-2:] - ly.scale[-2:] / 2
        assert np.allclose(edge, image.translate - image.scale / 2)
    boxes = layers["boxes"]
    assert type(boxes).__name__ == "Shapes" and len(boxes.data) >= 1
    assert np.allclose(boxes.scale, image.scale)
    assert "malignant:" in explain.probs.text() and "benign:" in explain.probs.text()
    # the case has an expert mask: it stays in the Labels layer, the prediction gets
    # its own layer, on the image's grid
    mask = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "mask")
    assert mask.metadata["wsseg_source"] == "expert"
    pred = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_prediction"))
    assert type(pred).__name__ == "Labels" and pred.data.shape == (h, w)
    assert np.allclose(pred.scale, image.scale)
    # re-running replaces the overlays instead of piling them up
    names = sorted(ly.name for ly in viewer.layers)
    _run(qtbot, explain)
    assert sorted(ly.name for ly in viewer.layers) == names


def test_skin_model_only_offered_on_skin_and_maps_align(docks, qtbot):
    viewer, browser, explain = docks
    browser.open_image(browser.study.images("xray")[0].id)
    assert explain.models.count() == 0  # no chexseg version in this study
    rec = browser.study.images("skin")[0]
    browser.open_image(rec.id)
    assert [explain.models.itemData(i)["method"] for i in range(explain.models.count())] == [
        "manifold"
    ]
    _run(qtbot, explain)
    image = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
    maps = _maps(viewer)
    assert maps and all(np.allclose(ly.scale[-2:], image.scale) for ly in maps)
    assert [ly.visible for ly in maps].count(True) == 1  # one map shown at first
    probs = dict(line.split(": ") for line in explain.probs.text().splitlines())
    assert probs and set(probs) <= set(labels_for("skin"))
    assert all(0.0 <= float(v) <= 1.0 for v in probs.values())


def test_suggest_next_ranks_unannotated_images_in_the_table(docks, qtbot):
    viewer, browser, explain = docks
    study = browser.study
    browser.open_image(study.images("skin")[0].id)
    worker = browser.suggest()
    qtbot.waitUntil(lambda: worker is not None and browser.suggest_btn.isEnabled(), timeout=60_000)
    col = browser.table.columnCount() - 1
    ranked = {
        browser._row_id(r): browser.table.item(r, col).text()
        for r in range(browser.table.rowCount())
        if browser.table.item(r, col).text()
    }
    unannotated = {r.id for r in study.images("skin") if study.latest_accepted_mask(r.id) is None}
    assert ranked and set(ranked) <= unannotated
    assert sorted(int(v) for v in ranked.values()) == list(range(1, len(ranked) + 1))


def test_a_broken_model_version_is_reported_not_raised(docks, qtbot, trained_copy):
    viewer, browser, explain = docks
    bad = trained_copy / "models" / "manifold" / "v009"
    bad.mkdir()
    (bad / "info.json").write_text('{"method": "manifold", "config": {}}')
    (bad / "weights.pt").write_bytes(b"not a torch file")
    browser.open_image(browser.study.images("skin")[0].id)
    assert explain.models.currentData()["path"] != str(bad)  # the current one, v001
    explain.models.setCurrentIndex(0)  # newest first
    assert explain.models.currentData()["path"] == str(bad)
    explain.explain()
    qtbot.waitUntil(explain.run_btn.isEnabled, timeout=60_000)
    assert explain.probs.text().startswith("error") and "weights.pt" in explain.probs.text()
    assert not [ly for ly in viewer.layers if MAP_KEY in ly.metadata]
