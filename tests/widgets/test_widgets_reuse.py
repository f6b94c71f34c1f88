"""Case layers reused between cases (issue 13: opening a case blocked the UI 1.3-2.4 s,
mostly napari's ``gc.collect()`` per removed layer).

A case of the same kind reuses the image and mask layers, and shows exactly what a
fresh layer would: its own pixels, placement, name, metadata, mask and slider range;
a case without a mask gets an empty placeholder one can paint on (not counted as a
mask); a case of another kind parks the pair on screen as a hidden one-pixel spare
that neither the sliders nor the docks see, and takes back a spare of its own kind.
The browser puts such a case on screen in steps (the UI runs between them), with the
same result as at once. The long-lived heap is frozen after imports, so napari's
collection on a removal scans only what came after, and garbage made after the
freeze is still collected.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from pathlib import Path

import numpy as np

from napari_wsseg.io import read_image
from napari_wsseg.io.base import ImageData
from napari_wsseg.study.vocab import labels_for
from napari_wsseg.widgets import _case, _correct, _display, _put, _slots, qt_layout
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


def _image_layer(viewer):
    return next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")


def _hidden_rows(viewer) -> list[str]:
    """The names of the layers whose rows napari's layer list does not show."""
    view = viewer.window._qt_viewer.layers
    model = view.model()
    return sorted(model.index(r, 0).data() for r in range(model.rowCount()) if view.isRowHidden(r))


def test_same_kind_cases_reuse_layers_and_show_their_own_state(make_napari_viewer, study_copy):
    viewer = make_napari_viewer()
    browser, correct = QtStudyBrowser(viewer), QtCorrect(viewer)
    viewer.window.add_dock_widget(browser)
    viewer.window.add_dock_widget(correct)
    browser.open_study(study_copy)
    study = browser.study
    opened = []
    _slots.case_opened(viewer).connect(lambda e: opened.append(e.value))
    skins = study.images("skin")
    with_mask = next(r for r in skins if study.latest_accepted_mask(r.id) is not None)
    without = next(r for r in skins if study.latest_accepted_mask(r.id) is None)

    browser.open_image(with_mask.id)
    image, mask = _image_layer(viewer), _case.mask_layer(viewer)
    assert mask is not None and mask.metadata["wsseg_source"] == "expert"
    assert mask.data.any()
    image.contrast_limits = (10, 20)  # a user's setting on this case
    image.opacity = 0.3
    mask.paint((5, 5), 1)  # an undo must not reach into the next case
    mask.metadata["wsseg_dirty"] = False  # (leaving without the unsaved-edits dialog)

    browser.open_image(without.id)
    assert opened == [with_mask.id, without.id]
    assert _image_layer(viewer) is image and len(viewer.layers) == 2  # reused, none added
    assert image.name == Path(without.relpath).name
    assert image.metadata[_case.CASE_KEY]["image_id"] == without.id
    np.testing.assert_array_equal(np.asarray(image.data), read_image(without.path).data)
    assert image.opacity == 1.0  # display settings reset as on a fresh layer
    # no stored mask: the Labels layer is an empty placeholder, not "the case's mask"
    slot = _case.mask_slot(viewer)
    assert slot is mask and _case.mask_layer(viewer) is None
    assert slot.metadata["wsseg_source"] == _slots.PLACEHOLDER and not slot.data.any()
    assert slot.data.shape == image.data.shape[:2] and not slot._undo_history
    assert slot.name == _case.EMPTY_MASK_LAYER
    # the Correct dock followed: it lists this case's versions (no layer was inserted)
    listed = [correct.list.item(i).text() for i in range(correct.list.count())]
    mine = [_correct.describe_version(v) for v in reversed(study.mask_versions(without.id))]
    assert listed == mine
    # painting on it makes it the case's mask, stored as an expert one
    slot.paint((3, 3), 1)
    assert _case.has_unsaved_edits(viewer) and _case.mask_layer(viewer) is slot
    correct.author.setText("tester")
    vid = correct.accept()
    assert vid is not None and study.mask_versions(without.id)[-1].source == "expert"

    browser.open_image(with_mask.id)  # back: its own stored mask again
    assert _case.mask_layer(viewer) is slot and slot.name == _case.MASK_LAYER
    np.testing.assert_array_equal(slot.data > 0, study.load_mask(
        study.latest_accepted_mask(with_mask.id).id) > 0)  # fmt: skip


def _case_roles(viewer) -> list:
    return [ly.metadata.get("wsseg_role") for ly in _case.case_layers(viewer)]


def test_another_kind_of_case_parks_the_pair_and_takes_a_spare_back(
    make_napari_viewer, study_copy, qtbot
):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    study = browser.study
    browser.open_image(study.images("skin")[0].id)
    skin, skin_mask = _image_layer(viewer), _case.mask_slot(viewer)
    assert viewer.dims.axis_labels == ("y", "x")

    ct_rec = study.images("ct")[0]
    browser.open_image(ct_rec.id)
    ct = _image_layer(viewer)
    assert ct is not skin and ct.ndim == 3 and sorted(_case_roles(viewer)) == ["image", "mask"]
    # the skin pair is a hidden one-pixel spare on the CT's first pixel, no case of its own
    assert _slots.spares(viewer) == [skin, skin_mask]
    for spare in (skin, skin_mask):
        assert not spare.visible and _display.role(spare) is None
        assert np.asarray(spare.data).size <= 3 and spare.name.startswith("spare skin ")
        np.testing.assert_allclose(spare.scale, ct.scale[-2:])
        assert "_update_draw" in vars(spare)  # napari's per-paint update skips it
    assert viewer.layers.index(skin) < viewer.layers.index(ct)  # spares at the bottom
    # no row in the layer list for a spare; the case's rows are there
    qtbot.waitUntil(lambda: _hidden_rows(viewer) == sorted([skin.name, skin_mask.name]))
    assert viewer.dims.axis_labels == ("z", "y", "x")
    assert viewer.dims.nsteps[0] == read_image(ct_rec.path).data.shape[0]
    assert _case.mask_slot(viewer).ndim == 3

    browser.open_image(study.images("xray")[0].id)
    assert _image_layer(viewer).ndim == 2 and len(_slots.spares(viewer)) == 4
    # X-ray masks have one plane a finding: the axis is named by the finding on screen,
    # and the parked CT pair adds no step to it
    assert viewer.dims.ndim == 3 and viewer.dims.axis_labels[0].startswith("finding: ")
    assert viewer.dims.axis_labels[1:] == ("y", "x")
    assert viewer.dims.nsteps[0] == len(labels_for("xray"))

    other = study.images("skin")[1]
    browser.open_image(other.id)
    assert _image_layer(viewer) is skin and skin.visible  # the spare came back
    np.testing.assert_array_equal(np.asarray(skin.data), read_image(other.path).data)
    assert _case.mask_slot(viewer) is skin_mask and skin_mask.visible
    assert skin_mask.data.shape == skin.data.shape[:2]
    for layer in (skin, skin_mask):  # taken back: updated at each paint, listed again
        assert "_update_draw" not in vars(layer)
    parked = sorted(ly.name for ly in _slots.spares(viewer))
    qtbot.waitUntil(lambda: _hidden_rows(viewer) == parked)
    assert skin.name not in _hidden_rows(viewer) and len(_hidden_rows(viewer)) == 4
    assert skin.name == Path(other.relpath).name and _display.role(skin) == "image"
    # the parked 3D pairs leave the leading axis one step long: no slider is shown
    assert viewer.dims.axis_labels[-2:] == ("y", "x") and viewer.dims.nsteps[0] == 1
    assert _slots.spares(viewer)[0] is ct and viewer.layers.selection.active is skin_mask


def test_spares_are_capped_and_a_half_pair_is_dropped(make_napari_viewer, study_copy, monkeypatch):
    monkeypatch.setattr(_slots, "MAX_SPARES", 1)
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    study = browser.study
    for modality in ("skin", "ct", "xray"):
        browser.open_image(study.images(modality)[0].id)
    assert [ly.ndim for ly in _slots.spares(viewer)] == [3, 3]  # the CT pair, not the skin
    viewer.layers.remove(_slots.spares(viewer)[1])  # the user deletes a spare's mask
    browser.open_image(study.images("mammo")[0].id)
    spares = _slots.spares(viewer)
    pairs = {ly.metadata["wsseg_pair"] for ly in spares}
    assert len(spares) == 2 and len(pairs) == 1
    assert {_display.role(ly) for ly in viewer.layers} == {"image", "mask", None}


def test_same_kind_update_gives_the_sliders_the_new_range():
    """A reused layer's data update: napari recomputes the sliders on the data event,
    before a blocked refresh updates the extent; the range must be the new case's."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    layer = viewer.add_image(np.zeros((10, 20, 20), np.int16))
    deeper = ImageData(np.zeros((30, 20, 20), np.int16), "ct", scale=(2.0, 1.0, 1.0))
    _slots.update_image(viewer, layer, deeper, "deeper", {})
    assert viewer.dims.range[0].stop == 58.0 and viewer.dims.nsteps[0] == 30
    labels = viewer.add_labels(np.zeros((10, 20, 20), np.uint8))
    _slots.update_labels(viewer, labels, np.zeros((30, 20, 20), np.uint8), (2.0, 1, 1), (0, 0, 0))
    assert viewer.dims.nsteps[0] == 30


def test_stepwise_open_ends_as_the_one_shot_open(make_napari_viewer, study_copy, qtbot):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    study = browser.study
    skin, ct = study.images("skin")[0], study.images("ct")[0]
    browser.open_image(skin.id)
    opened = []
    _slots.case_opened(viewer).connect(lambda e: opened.append(e.value))
    # another kind: the old case's pixels go, the rest of it is parked, then the
    # image, the mask and the sliders come (a pause after each: 5; one more when the
    # spares move, the order or the selection change)
    pauses = list(_put.put_case_steps(viewer, _case.load_case(study, ct.id)))
    assert len(pauses) == 5 and opened == [ct.id]
    # the same kind: the image, then the mask (the last case's transparent meanwhile)
    same = _case.load_case(study, study.images("ct")[1].id)
    opacity = _case.mask_slot(viewer).opacity
    steps = _put.put_case_steps(viewer, same)
    next(steps)
    assert _case.mask_slot(viewer).opacity == 0  # never the last CT's mask on this CT
    assert len(list(steps)) == 1 and _case.mask_slot(viewer).opacity == opacity

    browser.open_image(skin.id)
    browser._put(ct.id, _case.load_case(study, ct.id), stepwise=True)
    assert browser.current_id == skin.id  # not yet: the rest comes in later turns
    # a second case while the first is coming in: the first goes on screen first
    browser._put(skin.id, _case.load_case(study, skin.id), stepwise=True)
    qtbot.waitUntil(lambda: browser.current_id == skin.id and not browser._steps.busy)
    assert opened[-2:] == [ct.id, skin.id]
    assert sorted(_case_roles(viewer)) == ["image", "mask"]
    assert _image_layer(viewer).metadata[_case.CASE_KEY]["image_id"] == skin.id
    shown = np.asarray(_image_layer(viewer).data)
    np.testing.assert_array_equal(shown, read_image(skin.path).data)
    assert len(_slots.spares(viewer)) == 2 and all(not ly.visible for ly in _slots.spares(viewer))
    roles = [_display.role(ly) for ly in viewer.layers]
    assert roles == [None, None, "image", "mask"]


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_heap_frozen_once_per_import_and_later_cycles_still_collected(monkeypatch):
    monkeypatch.setattr(_slots, "_FROZEN_AT", [0])
    before = gc.get_freeze_count()
    assert _slots.settle_heap() is True  # modules were imported since "the last freeze"
    frozen = gc.get_freeze_count()
    assert frozen > before
    assert _slots.settle_heap() is False  # nothing imported since: no second freeze
    monkeypatch.setitem(sys.modules, "wsseg_fresh_module", types.ModuleType("fresh"))
    assert _slots.settle_heap() is True
    # a cycle made after the freeze (a removed case layer's) is still collected
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert ref() is None


def test_case_change_freezes_between_dropping_and_adding_layers(
    make_napari_viewer, study_copy, monkeypatch
):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    layers_at_freeze = []
    real = _slots.settle_heap

    def spy() -> bool:
        layers_at_freeze.append(len(_case.case_layers(viewer)))
        return real()

    monkeypatch.setattr(_slots, "settle_heap", spy)
    browser.open_image(browser.study.images("skin")[0].id)
    browser.open_image(browser.study.images("ct")[0].id)  # another kind: parked
    # once per case open, after the last case's layers went, before the new ones came
    assert layers_at_freeze == [0, 0]
    assert len(_case.case_layers(viewer)) == 2 and gc.get_freeze_count() > 0


def test_the_slider_row_is_kept_for_a_2d_case(make_napari_viewer, study_copy, qtbot):
    """No slider on a photo, one on a CT: the dims widget keeps a row either way, so
    the canvas is not resized (and repainted twice) on each change of case kind; a
    slider shown again still gets an axis label wide enough for its name."""
    viewer = make_napari_viewer(show=True)  # real widths
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    dims = viewer.window._qt_viewer.dims
    browser.open_image(browser.study.images("skin")[0].id)
    assert not any(dims._displayed_sliders) and dims.minimumHeight() >= dims.SLIDERHEIGHT
    browser.open_image(browser.study.images("ct")[0].id)
    assert sum(dims._displayed_sliders) == 1 and dims.minimumHeight() == dims.SLIDERHEIGHT
    assert qt_layout.keep_slider_row(viewer)  # a second dock: kept once, still True
    for modality in ("skin", "xray"):  # as a double-click opens them: in steps
        image_id = browser.study.images(modality)[0].id
        browser.open_image(image_id, background=True)
        qtbot.waitUntil(lambda i=image_id: browser.current_id == i, timeout=10_000)
    label = dims.slider_widgets[0].axis_label
    assert label.text().startswith("finding: ")
    # napari's own rule: the longest label, at most a fifth of the slider
    width = label.fontMetrics().boundingRect(label.text()).width()

    def wide_enough() -> bool:
        return label.width() >= min(width, int(dims.slider_widgets[0].width() * 0.2))

    qtbot.waitUntil(wide_enough, timeout=2_000)  # not cut to "..."


def test_a_suggested_case_waits_for_the_case_coming_in(make_napari_viewer, study_copy, qtbot):
    """The Explain dock's Suggest list opens a case itself; while the browser is still
    putting one on screen in steps, that one is finished first (never two cases)."""
    from napari_wsseg.widgets.qt_suggest import QtSuggest

    viewer = make_napari_viewer()
    browser, suggest = QtStudyBrowser(viewer), QtSuggest(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    study = browser.study
    ct, skin, other = study.images("ct")[0], study.images("skin")[0], study.images("skin")[1]
    browser.open_image(ct.id)
    browser._put(skin.id, _case.load_case(study, skin.id), stepwise=True)
    qtbot.waitUntil(lambda: _case.current_case(viewer) is not None, timeout=5_000)
    assert browser._steps.busy  # the skin image is in, its mask not yet
    suggest.open(other.id)
    assert not browser._steps.busy and browser.current_id == skin.id
    assert sorted(_case_roles(viewer)) == ["image", "mask"]
    assert _case.current_case(viewer)["image_id"] == other.id


def test_spares_move_two_a_step_and_hiding_two_rebuilds_the_scene_once(make_napari_viewer):
    """Each spare moved is 5-8 ms of napari's and vispy's transforms: two a step. Each
    layer shown or hidden rebuilt napari's scene graph (10-15 ms): once for a pair."""
    viewer = make_napari_viewer()
    layers = [
        viewer.add_image(np.zeros((1, 1), np.uint8), metadata={_slots.SPARE_KEY: "image"})
        for _ in range(5)
    ]
    steps = list(_slots.place_spares_steps(viewer, (0.5, 0.5), (3.0, 4.0), sliders=False))
    assert len(steps) == 3
    for layer in layers:
        np.testing.assert_allclose(layer.scale, (0.5, 0.5))
        np.testing.assert_allclose(layer.translate, (3.0, 4.0))
    assert list(_slots.place_spares_steps(viewer, (0.5, 0.5), (3.0, 4.0))) == []  # all there

    canvas = viewer.window._qt_viewer.canvas
    rebuilt = []
    reorder = canvas._reorder_layers
    canvas._reorder_layers = lambda: (rebuilt.append(1), reorder())[1]
    layers[0].visible = layers[1].visible = False
    assert len(rebuilt) == 2  # napari's own: once a layer
    with _slots.one_scene_update(viewer):
        layers[2].visible = layers[3].visible = False
        assert len(rebuilt) == 2
    assert len(rebuilt) == 3 and not canvas._pause_scene_graph
    assert [canvas.layer_to_visual[ly].node.visible for ly in layers] == [0, 0, 0, 0, 1]
