"""Case layers reused between cases (issue 13: opening a case blocked the UI 1.3-2.4 s,
mostly napari's ``gc.collect()`` per removed layer).

A case of the same kind reuses the image and mask layers, and shows exactly what a
fresh layer would: its own pixels, placement, name, metadata and mask; a case
without a mask gets an empty placeholder one can paint on (not counted as a mask);
a case of another kind gets fresh layers, with the slider axes of its own ndim.
The long-lived heap is frozen after imports, so napari's collection on a removal
scans only what came after, and garbage made after the freeze is still collected.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from pathlib import Path

import numpy as np

from napari_wsseg.io import read_image
from napari_wsseg.widgets import _case, _correct, _slots
from napari_wsseg.widgets.qt_correct import QtCorrect
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser


def _image_layer(viewer):
    return next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")


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


def test_another_kind_of_case_gets_fresh_layers_and_its_own_axes(make_napari_viewer, study_copy):
    viewer = make_napari_viewer()
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(study_copy)
    study = browser.study
    browser.open_image(study.images("skin")[0].id)
    skin = _image_layer(viewer)
    assert viewer.dims.axis_labels == ("y", "x")

    browser.open_image(study.images("ct")[0].id)
    ct = _image_layer(viewer)
    assert ct is not skin and skin not in viewer.layers and ct.ndim == 3
    assert viewer.dims.axis_labels == ("z", "y", "x")
    assert _case.mask_slot(viewer).ndim == 3

    browser.open_image(study.images("xray")[0].id)
    assert _image_layer(viewer).ndim == 2
    # X-ray masks have one plane a finding: the axis is named by the finding on screen
    assert viewer.dims.ndim == 3 and viewer.dims.axis_labels[0].startswith("finding: ")
    assert viewer.dims.axis_labels[1:] == ("y", "x")

    browser.open_image(study.images("skin")[1].id)
    assert viewer.dims.axis_labels == ("y", "x") and len(viewer.layers) == 2


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
        layers_at_freeze.append(len(viewer.layers))
        return real()

    monkeypatch.setattr(_slots, "settle_heap", spy)
    browser.open_image(browser.study.images("skin")[0].id)
    browser.open_image(browser.study.images("ct")[0].id)  # another kind: all layers go
    # once per case open, after the last case's layers went, before the new ones came
    assert layers_at_freeze == [0, 0]
    assert len(viewer.layers) == 2 and gc.get_freeze_count() > 0
