"""Screenshots of a large slide's heatmap filling in as blocks finish, under Xvfb.

Run::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_wsi_stream.py

Writes a generated slide (``phantoms.wsi``, 16k px square by default) into a fresh
study in /tmp with the shipped ``distill`` model, opens it in the viewer as
``make run`` does, presses Explain and saves ``docs/images/wsi_stream_running.png``
when about ``--at`` of the tiles are done (progress bar with ETA in the Explain
dock, ``instance_prob`` partly filled in), then presses Cancel and saves
``wsi_stream_cancelled.png`` (what was done stays on screen).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from make_screenshots import dock, save, wait  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=16384)
    ap.add_argument("--at", type=float, default=0.45, help="fraction done at the first shot")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args()

    from napari_wsseg.phantoms.wsi import write_wsi
    from napari_wsseg.study import Study
    from napari_wsseg.training.defaults import install_default_models

    work = Path(tempfile.mkdtemp(prefix="wsseg-wsi-shots-"))
    slide = work / f"wsi_{args.side}.ome.tif"
    info = write_wsi(slide, (args.side, args.side), seed=0, tissue=0.3, tumour=0.05)
    print(f"slide {args.side} px written in {info['seconds']:.0f} s", flush=True)
    study = Study.create(work / "study")
    study.add_image(slide, "slide", labels={"tumor": 1})
    study.close()
    install_default_models(work / "study", ["distill"])

    from qtpy.QtWidgets import QApplication

    from napari_wsseg.launch import launch

    viewer = launch(str(work / "study"), run=False)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1366, 768)
    wait(app, lambda: True)
    explain = dock(viewer, "Explain")
    explain.on_open.setChecked(False)  # one run, started below
    explain.auto.setChecked(False)
    browser = dock(viewer, "Study browser")
    browser.open_image(Study.open(work / "study").images("slide")[0].id)
    wait(app, lambda: explain.models.count() > 0, 60)
    explain.explain()
    t0 = time.perf_counter()

    def at_fraction() -> bool:
        p = explain._run.progress if explain._run is not None else None
        return p is not None and p.fraction >= args.at

    wait(app, at_fraction, 900)
    from qtpy.QtWidgets import QScrollArea

    area = explain.progress.parent()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parent()
    if area is not None:  # at 1366x768 the dock scrolls: show its progress bar in the shot
        area.ensureWidgetVisible(explain.progress)
    wait(app, lambda: True)
    time.sleep(0.6)  # one more poll of the dock's timer
    wait(app, lambda: True)
    viewer.reset_view()
    args.out.mkdir(parents=True, exist_ok=True)
    for ly in viewer.layers:
        if "wsseg_partial" in ly.metadata:
            shown = ly._slice.image.view
            print(f"partial layer: {int((ly.data > 0).sum())} tiles filled, "
                  f"{int((shown > 0).sum())} shown, limits {ly.contrast_limits}, "
                  f"max {float(ly.data.max()):.3f}", flush=True)  # fmt: skip
    save(viewer, args.out / "wsi_stream_running.png")
    print(f"running shot after {time.perf_counter() - t0:.0f} s", flush=True)
    explain.cancel()
    wait(app, explain.run_btn.isEnabled, 300)
    viewer.reset_view()
    save(viewer, args.out / "wsi_stream_cancelled.png")
    viewer.close()


if __name__ == "__main__":
    main()
