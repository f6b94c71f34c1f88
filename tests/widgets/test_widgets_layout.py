"""The docked window fits 1366x768 and 1920x1080 screens, whatever case is open.

Issue 13: the Retrain dock's minimum height pushed the window past a 1000 px screen
(the tab bar, napari's finding slider and the status bar went off-screen) and the
study table showed two rows. Each control of each dock must be reachable: scrolled
into view in its dock, it lies inside the screen.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import QRect
from qtpy.QtWidgets import QAbstractButton, QAbstractSlider, QComboBox, QLineEdit

from napari_wsseg.widgets import _case

SIZES = [(1366, 768), (1920, 1080)]
CONTROLS = (QAbstractButton, QAbstractSlider, QComboBox, QLineEdit)


def _docks(viewer) -> dict:
    return {name.split(" (")[0]: w for name, w in viewer.window.dock_widgets.items()}


def _outside(widget, screen: QRect) -> list[str]:
    """The controls of a dock that stay outside ``screen`` once scrolled into view."""
    widget.parent().raise_()  # its tab, for the tabbed docks
    area = widget.scroll_area
    bad = []
    for ctrl in widget.findChildren(CONTROLS):
        if not ctrl.isVisibleTo(widget) or area.horizontalScrollBar() is ctrl:
            continue
        if ctrl is area.verticalScrollBar() or ctrl is area.horizontalScrollBar():
            continue
        area.ensureWidgetVisible(ctrl, 0, 0)
        top_left = ctrl.mapToGlobal(ctrl.rect().topLeft())
        rect = QRect(top_left, ctrl.size())
        if not screen.contains(rect.center()):
            bad.append(f"{type(ctrl).__name__} {getattr(ctrl, 'text', lambda: '')()!r}")
    return bad


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_window_and_docks_fit_the_screen_for_each_modality(study_copy, qtbot, size):
    from napari_wsseg.launch import launch

    width, height = size
    viewer = launch(str(study_copy), run=False, size=size)
    try:
        win = viewer.window._qt_window
        win.move(0, 0)
        screen = QRect(0, 0, width, height)
        docks = _docks(viewer)
        browser, retrain = docks["Study browser"], docks["Retrain"]
        qtbot.waitUntil(lambda: retrain.settings.rowCount() > 0, timeout=60_000)
        for modality in ("ct", "mammo", "slide", "xray", "skin"):
            browser.modality.setCurrentText(modality)
            browser.open_row(0)
            qtbot.wait(30)
            assert _case.current_case(viewer)["modality"] == modality
            assert win.minimumSizeHint().height() <= height, modality
            assert win.frameGeometry().height() <= height, modality
            for name, widget in docks.items():
                assert not _outside(widget, screen), (modality, name, _outside(widget, screen))
            # napari's own controls: the slider (X-ray findings, CT slices), status bar
            dims = viewer.window._qt_viewer.dims
            if viewer.dims.ndim > 2:
                slider_at = dims.mapToGlobal(dims.rect().center())
                assert dims.isVisible() and screen.contains(slider_at), modality
            status = win.statusBar()
            assert screen.contains(status.mapToGlobal(status.rect().center())), modality
        browser.modality.setCurrentText("all")
        rows = (
            browser.table.viewport().height() / browser.table.verticalHeader().defaultSectionSize()
        )
        if height >= 1080:
            assert rows >= 8, rows
        assert browser.table.rowCount() > 8
    finally:
        viewer.close()
