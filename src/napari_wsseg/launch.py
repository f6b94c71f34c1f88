"""``python -m napari_wsseg.launch STUDY``: napari with the plugin docked and a study open."""

from __future__ import annotations

import sys


def launch(study: str | None = None, run: bool = True, size: tuple[int, int] | None = None):
    """Open napari, dock the plugin's widgets and open ``study`` in the study browser;
    ``size`` (width, height) sets the window's size first (tests, screenshots)."""
    import napari

    viewer = napari.Viewer(title="napari-wsseg")
    if size is not None:
        viewer.window._qt_window.resize(*size)
    docks = {}
    for name in ("Study browser", "Explain", "Correct mask", "Retrain"):
        docks[name] = viewer.window.add_plugin_dock_widget("napari-wsseg", name)
    # Explain, Correct and Retrain share one tabbed area under the browser.
    qt_window = viewer.window._qt_window
    qt_window.tabifyDockWidget(docks["Explain"][0], docks["Correct mask"][0])
    qt_window.tabifyDockWidget(docks["Explain"][0], docks["Retrain"][0])
    docks["Explain"][0].raise_()
    fit_docks(viewer, docks["Study browser"][0], docks["Explain"][0])
    browser = docks["Study browser"][1]
    docks["Explain"][1].on_open.setChecked(True)  # overlays at once, case after case
    if study and browser is not None:
        browser.open_study(study)
        browser.open_row(0)
    if study and browser is not None:
        fit_view_later(viewer)
    if run:
        napari.run()
    return viewer


def fit_docks(viewer, browser_dock, tabs_dock) -> None:
    """Size the dock column: a third of the window wide (the table's columns fit), the
    study table a bit over half the height (eight rows at 1920x1080), the tabbed
    Explain/Correct/Retrain area the rest."""
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window
    height = window.height()
    window.resizeDocks([browser_dock], [max(440, window.width() // 3)], Qt.Orientation.Horizontal)
    window.resizeDocks(
        [browser_dock, tabs_dock],
        [int(height * 0.55), int(height * 0.45)],
        Qt.Orientation.Vertical,
    )


def fit_view_later(viewer) -> None:
    """Fit the case to the canvas once the window has its final size (the first view
    was clipped: it was fitted to the canvas before the docks took their room)."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, viewer.reset_view)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    launch(argv[0] if argv else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
