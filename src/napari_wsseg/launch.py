"""``python -m napari_wsseg.launch STUDY``: napari with the plugin docked and a study open."""

from __future__ import annotations

import sys


def launch(study: str | None = None, run: bool = True):
    """Open napari, dock the plugin's widgets and open ``study`` in the study browser."""
    import napari

    viewer = napari.Viewer(title="napari-wsseg")
    browser = None
    for name in ("Study browser", "Explain", "Correct mask", "Retrain"):
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-wsseg", name)
        if name == "Study browser":
            browser = widget
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
