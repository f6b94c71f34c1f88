"""``python -m napari_wsseg.launch STUDY``: napari with the plugin docked and a study open."""

from __future__ import annotations

import sys


def launch(study: str | None = None, run: bool = True):
    """Open napari, dock the plugin's widgets and open ``study`` in the study browser."""
    import napari

    viewer = napari.Viewer(title="napari-wsseg")
    docks = {}
    for name in ("Study browser", "Explain", "Correct mask", "Retrain"):
        docks[name] = viewer.window.add_plugin_dock_widget("napari-wsseg", name)
    # Explain, Correct and Retrain share one tabbed area under the browser.
    qt_window = viewer.window._qt_window
    qt_window.tabifyDockWidget(docks["Explain"][0], docks["Correct mask"][0])
    qt_window.tabifyDockWidget(docks["Explain"][0], docks["Retrain"][0])
    docks["Explain"][0].raise_()
    browser = docks["Study browser"][1]
    docks["Explain"][1].on_open.setChecked(True)  # overlays at once, case after case
    if study and browser is not None:
        browser.open_study(study)
        browser.open_row(0)
    if run:
        napari.run()
    return viewer


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    launch(argv[0] if argv else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
