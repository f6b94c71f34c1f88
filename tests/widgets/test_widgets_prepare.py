"""Spare layers made ahead (issue 13: the first case of a kind in a session stalled the
UI 200-300 ms: fresh napari layers, first draws, new glyphs).

Once a study's first case is on screen the browser adds, in idle steps, a hidden
one-pixel spare pair for each other kind of case the study holds; they change
neither the sliders, the selection nor the legend, and the first case of each kind
then takes its pair without a layer being added. A case open cancels what is left,
and the next one resumes it.
"""

from __future__ import annotations

import numpy as np

from napari_wsseg.io import read_image
from napari_wsseg.widgets import _case, _display, _prepare, _slots, qt_steps
from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser

MODALITIES = ("ct", "mammo", "slide", "xray", "skin")


def _browser(viewer, root) -> QtStudyBrowser:
    browser = QtStudyBrowser(viewer)
    viewer.window.add_dock_widget(browser)
    browser.open_study(root)
    return browser


def _first(study, modality: str) -> int:
    return study.images(modality)[0].id


def _assert_spares_whole(viewer, settled: bool = True) -> None:
    """Each spare has its layer controls and its overlays as napari made them (both go
    in steps of their own when made ahead, and a cancel half-way must not lose them);
    once all is made (``settled``) its controls hold no move or resize event back (Qt
    would send them all in one later paint)."""
    from qtpy.QtWidgets import QWidget

    from napari_wsseg.widgets import qt_prepare

    controls = viewer.window._qt_viewer.controls.widgets
    for layer in _slots.spares(viewer):
        assert layer in controls, layer.name
        widgets = [controls[layer], *controls[layer].findChildren(QWidget)]
        assert not settled or not [w for w in widgets if qt_prepare.pending(w)], layer.name
        fresh = type(layer)(np.zeros((1, 1), np.uint8))
        shown = {k: o.visible for k, o in layer._overlays.items()}
        assert shown == {k: o.visible for k, o in fresh._overlays.items()}, layer.name
        assert not layer.visible, layer.name  # (a case's layers parked keep their opacity)


def test_spares_are_made_ahead_for_each_other_kind_and_taken_without_a_new_layer(
    make_napari_viewer, study_copy, qtbot, made_ahead
):
    viewer = make_napari_viewer(show=True)
    browser = _browser(viewer, study_copy)
    study = browser.study
    browser.open_image(_first(study, "ct"))
    case = list(viewer.layers)
    active = viewer.layers.selection.active
    ranges = viewer.dims.range
    overlay = _display.text_overlay(viewer)
    legend = (overlay.visible, overlay.text)
    assert browser.prepare.busy  # the kinds are read in a worker
    qtbot.waitUntil(lambda: not browser.prepare.busy, timeout=60_000)

    spares = _slots.spares(viewer)
    assert list(viewer.layers)[len(spares) :] == case  # the spares sit at the bottom
    names = sorted(ly.name for ly in spares)
    assert names == sorted(f"spare {m} {w}" for m in MODALITIES[1:] for w in ("image", "mask"))
    for layer in spares:
        default = type(layer)(np.zeros((1, 1), np.uint8)).opacity
        assert not layer.visible and layer.opacity == default  # put back after its one draw
        first = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        assert first.size <= 2**layer.ndim * 4  # one pixel (two levels for a pyramid)
    _assert_spares_whole(viewer)
    assert viewer.layers.selection.active is active
    assert viewer.dims.range == ranges  # nor the sliders' ranges
    assert (overlay.visible, overlay.text) == legend  # the overlay drawn once, put back
    font = _prepare._font(viewer)
    assert font is not None and all(c in font._glyphs for c in _prepare.GLYPHS)

    added = []
    viewer.layers.events.inserted.connect(lambda e: added.append(e.value.name))
    for modality in MODALITIES[1:]:
        image_id = _first(study, modality)
        browser.open_image(image_id)
        image = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
        read = read_image(study.image(image_id).path, modality=modality)
        expect = read.data[0] if read.multiscale else read.data
        shown = image.data[0] if image.multiscale else image.data
        assert shown.shape == expect.shape and image.visible and image.opacity == 1.0
        assert _case.mask_slot(viewer).visible
    assert added == []  # each kind's first case took its pair made ahead


def test_a_case_open_cancels_what_is_left_and_the_next_open_resumes_it(
    make_napari_viewer, study_copy, qtbot, made_ahead
):
    viewer = make_napari_viewer(show=True)
    browser = _browser(viewer, study_copy)
    study = browser.study
    browser.open_image(_first(study, "skin"))
    qtbot.waitUntil(lambda: bool(_slots.spares(viewer)), timeout=60_000)  # under way
    assert browser.prepare.busy
    browser.open_image(_first(study, "ct"))  # cancels, then resumes after the open
    _assert_spares_whole(viewer, settled=False)  # the one cut half-way too
    image = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "image")
    assert image.ndim == 3 and image.visible and image.name.startswith("ct")
    qtbot.waitUntil(lambda: not browser.prepare.busy, timeout=60_000)
    kinds = {ly.name.split()[1] for ly in _slots.spares(viewer)}
    # a half pair left by the cancel is no pair; every kind but the one on screen has one
    assert kinds >= {"mammo", "slide", "xray"}
    pairs = _slots._pairs(viewer)
    assert len(pairs) == len({(p[0].name, p[1].name) for p in pairs})  # none made twice
    overlay = _display.text_overlay(viewer)
    assert overlay.text != " "  # the overlay's one draw was put back
    _assert_spares_whole(viewer)


def test_steps_cancel_drops_the_rest_runs_finally_and_not_the_callback(qtbot):
    from qtpy.QtCore import QObject

    done, ran, closed = [], [], []

    def gen():
        try:
            for k in range(5):
                ran.append(k)
                yield
        finally:
            closed.append(True)

    owner = QObject()
    steps = qt_steps.Steps(owner, interval_ms=10)
    steps.start(gen(), lambda: done.append(True), stepwise=True)
    assert ran == [0] and steps.busy
    steps.cancel()
    qtbot.wait(80)
    assert ran == [0] and closed == [True] and done == [] and not steps.busy


def test_a_spare_cut_after_each_of_its_steps_is_whole(make_napari_viewer):
    """A spare's insert, its controls and each slow overlay are steps of their own; a
    cancel after any of them leaves the layer with controls, overlays, hidden, its
    opacity back (a case may take it at once)."""
    from napari.layers import Labels

    viewer = make_napari_viewer(show=True)
    controls = viewer.window._qt_viewer.controls.widgets
    n = len(list(_prepare._drawn_once(viewer, Labels(np.zeros((1, 1), np.uint8)))))
    assert n >= 2 + len(_prepare.SLOW_OVERLAYS)  # insert, controls, each overlay
    for cut in range(1, n):
        layer = Labels(np.zeros((1, 1), np.uint8), opacity=0.6, name=f"cut {cut}")
        steps = _prepare._drawn_once(viewer, layer)
        for _ in range(cut):
            next(steps)
        assert layer in viewer.layers and layer.opacity == 0.0  # drawn, transparent
        if cut == 1:
            assert layer not in controls  # made in the next step
        steps.close()
        assert layer in controls and not layer.visible and layer.opacity == 0.6
        assert all(layer._overlays[k].visible for k in _prepare.SLOW_OVERLAYS)


def test_geometry_steps_send_each_pending_resize_once_as_qt_would(qtbot):
    """Widgets never shown get the resize (old size invalid) and move events Qt held
    back, once each, in steps of at most the budget; a widget deleted meanwhile is
    skipped; shown ones get nothing."""
    from qtpy.QtCore import QEvent, QObject
    from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

    from napari_wsseg.widgets import qt_prepare

    got: dict[str, list] = {}

    class Log(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
            if event.type() in (QEvent.Type.Resize, QEvent.Type.Move):
                old = event.oldSize() if event.type() == QEvent.Type.Resize else None
                got.setdefault(obj.objectName(), []).append((event.type(), old))
            return False

    window = QWidget()
    qtbot.addWidget(window)
    window.setLayout(QVBoxLayout())
    shown = QLabel("shown")
    window.layout().addWidget(shown)
    page = QWidget(window)
    page.hide()
    page.setLayout(QVBoxLayout())
    labels = [QLabel(f"l{k}") for k in range(4)]
    for k, label in enumerate(labels):
        label.setObjectName(f"l{k}")
        page.layout().addWidget(label)
    window.show()
    qtbot.waitExposed(window)
    page.adjustSize()
    held = [w for w in [page, *labels] if qt_prepare.pending(w)]
    assert labels[1] in held and not qt_prepare.pending(shown)
    log = Log()
    for w in (shown, *labels):
        w.installEventFilter(log)
    steps = qt_prepare.geometry_steps(window, budget_s=0.0)  # a step after each widget
    next(steps)
    labels[3].deleteLater()
    qtbot.wait(10)
    n = 1 + sum(1 for _ in steps)
    assert n >= len(held) - 1  # one widget a step
    assert not any(qt_prepare.pending(w) for w in [window, *window.findChildren(QWidget)])
    for name in ("l0", "l1", "l2"):
        resizes = [old for kind, old in got[name] if kind == QEvent.Type.Resize]
        assert len(resizes) == 1 and not resizes[0].isValid(), name
    assert "shown" not in got


def test_steps_wait_while_a_worker_runs_then_go_on_at_most_max_wait(qtbot):
    """A step waits while ``wait_while`` holds (a worker has the GIL), and the sequence
    goes on regardless once ``max_wait_ms`` is spent."""
    from qtpy.QtCore import QObject

    busy, ran, done = [True], [], []

    def gen():
        for k in range(3):
            ran.append(k)
            yield

    owner = QObject()
    steps = qt_steps.Steps(owner, interval_ms=10, wait_while=lambda: busy[0], max_wait_ms=10_000)
    steps.start(gen(), lambda: done.append(True), stepwise=True)
    qtbot.wait(100)
    assert ran == [] and steps.busy  # waited ~10 intervals
    busy[0] = False
    qtbot.waitUntil(lambda: bool(done), timeout=2_000)
    assert ran == [0, 1, 2]

    busy[0], ran[:], done[:] = True, [], []
    steps = qt_steps.Steps(owner, interval_ms=10, wait_while=lambda: busy[0], max_wait_ms=50)
    steps.start(gen(), lambda: done.append(True), stepwise=True)
    qtbot.waitUntil(lambda: bool(done), timeout=2_000)  # 5 waits, then on regardless
    assert ran == [0, 1, 2]


def test_prepare_waits_for_a_worker_thread(make_napari_viewer, study_copy, qtbot, made_ahead):
    """No spare is made while a thread worker runs (GIL contention stalled each step
    2-7x); they are made once it ends."""
    import threading

    from napari.qt.threading import thread_worker

    from napari_wsseg.widgets import qt_prepare

    release = threading.Event()

    @thread_worker
    def hold():
        release.wait(30)

    viewer = make_napari_viewer(show=True)
    worker = hold()
    worker.start()
    qtbot.waitUntil(qt_prepare.workers_running, timeout=5_000)
    try:
        browser = _browser(viewer, study_copy)
        browser.open_image(_first(browser.study, "skin"))
        qtbot.waitUntil(lambda: browser.prepare.busy, timeout=5_000)
        qtbot.wait(1_500)  # its kinds are read in a worker too: they wait for ours
        assert _slots.spares(viewer) == [] and browser.prepare.busy
    finally:
        release.set()
    qtbot.waitUntil(lambda: not browser.prepare.busy, timeout=60_000)
    assert {ly.name.split()[1] for ly in _slots.spares(viewer)} == set(MODALITIES[:-1])
    _assert_spares_whole(viewer)


def test_kind_of_matches_the_layers_a_case_of_it_gets(demo_study):
    """kind_of and fits agree with the reuse rules of _slots (image_fits, mask_fits)."""
    from napari.layers import Image, Labels

    for modality in MODALITIES:
        rec = demo_study.images(modality)[0]
        image = read_image(rec.path, modality=modality)
        kind = _prepare.kind_of(image, modality)
        layer = Image(
            _prepare._one_pixel_image(kind), rgb=kind["rgb"], multiscale=kind["multiscale"]
        )
        mask = Labels(np.zeros((1,) * kind["mask_ndim"], np.uint8))
        assert _prepare.fits(layer, mask, kind)
        assert _slots.image_fits(layer, image)
        assert _slots.mask_fits(mask, _slots.empty_mask(image, modality))
        others = [m for m in MODALITIES if m != modality]
        for other in others:  # no two modalities of the sample share a kind
            o = read_image(demo_study.images(other)[0].path, modality=other)
            assert not _prepare.fits(layer, mask, _prepare.kind_of(o, other))


def test_a_mask_stored_on_a_spare_made_ahead_updates_the_table_and_opens_do_not(
    make_napari_viewer, study_copy, qtbot, made_ahead
):
    """The browser refreshes its table (every row repainted) when a version is stored
    for the case on screen, also on a mask layer made ahead as a spare; putting cases
    on screen, which sets the mask's metadata several times, refreshes nothing."""
    from napari_wsseg.widgets.qt_correct import QtCorrect
    from napari_wsseg.widgets.qt_study_browser import COLUMNS

    viewer = make_napari_viewer(show=True)
    browser = _browser(viewer, study_copy)
    correct = QtCorrect(viewer)
    viewer.window.add_dock_widget(correct)
    correct.author.setText("dr-test")
    study = browser.study
    browser.open_image(_first(study, "skin"))
    qtbot.waitUntil(lambda: not browser.prepare.busy, timeout=60_000)
    spare = next(ly for ly in _slots.spares(viewer) if ly.name == "spare xray mask")
    refreshed = []
    real = browser.refresh
    browser.refresh = lambda: (refreshed.append(1), real())[1]
    rec = next(r for r in study.images("xray") if r.mask_status == "none")
    browser.open_image(rec.id)
    mask = _case.mask_slot(viewer)
    assert mask is spare  # the spare made ahead, taken back
    browser.open_image(study.images("ct")[0].id)
    browser.open_image(rec.id)
    assert refreshed == []  # three opens, no refresh
    mask.paint((0, 5, 5), 1)
    assert correct.accept() is not None
    assert refreshed == [1]
    cell = browser.table.item(browser.row_of(rec.id), COLUMNS.index("mask"))
    assert cell.text() != "none"
