"""Switch quickly between a CT case with its overlays and a slide, to catch the vispy crash.

Issue 13: under Xvfb, opening a slide right after a CT case with Explain's overlays
sometimes killed the process in vispy's ``glDrawArrays`` (SIGSEGV). Found so far
(2026-12-02): ``--cases skin,slide`` crashes on the second or third switch (or the
first), before and after layer reuse and gc.freeze; ``ct,skin``, ``slide,skin`` and
``ct,slide`` survive 6 switches; with Explain stopped after the first result (no run on
the slide) skin,slide survives 8, so a streamed Explain run on the slide is needed;
hiding colorbars or the removed layers first does not help. Traced
(``scripts/trace_gl.py``: GLIR and GL state logged before every draw; gdb): the crash is
always the second draw of a fresh Image visual (the slide's or the skin photo's), inside
Mesa (swrast_dri.so, 3 frames under glDrawArrays, reading a pointer of value -8 from the
GL context). In 4 of 6 traced runs the canvas shrank by 20 px between the two draws (the
layer controls dock widens for the slide, so the QOpenGLWidget makes a new framebuffer);
in 2 runs (the same frame both times, so deterministic there) nothing was resized. Every
buffer and texture the draw uses is alive, no GL command comes from another thread, no
event processing happens inside paintGL/resizeGL; the Text visuals of colorbars leave
attribute arrays 2-4 enabled on buffers later deleted, but disabling every array the
program does not use before each draw still crashes at the same frame; llvmpipe,
llvmpipe single-threaded (``LP_NUM_THREADS=0``), softpipe and ``mesa_glthread=false``
all crash; glibc's heap checks see nothing; a bare viewer with the same slide resized
the same way survives. Not fixed: without Mesa debug symbols (no debug archive reachable
here) the cause inside Mesa is not found. ``--window 1600x1000`` still crashes (same
pattern, at 814 -> 794 px). A second, faster trigger without a slide:
``scripts/make_screenshots.py --size 1366x768 --only xray_explain`` (Xvfb 1366x768)
crashed 4 of 4 times in ~36 s (also with gc.freeze off and with
``mesa_glthread=false``), in a paint that napari's dims widget runs while the X-ray's
mask layer is being added (the finding slider appears, the canvas shrinks); ``--only
make_run,xray_explain`` passes.

Later the same day, with a case of another kind taking back a hidden spare pair instead
of fresh layers (``widgets/_slots.py``: no fresh Image visual after the first case of a
kind) and a slider row kept under the canvas (``qt_layout.keep_slider_row``: the
canvas is no longer resized when a slider shows or hides), neither trigger crashes:
``--cases skin,slide`` survived 50 of 50 switches at 1600x1000 and 30 of 30 with
``--window 1366x768``, the default cases 50 of 50, and ``--only xray_explain`` at
1366x768 passed 2 of 2. The cause inside Mesa is still not found; what set it off
(a fresh visual drawn twice across a canvas resize) no longer happens on a case change.

This opens the sample study with the shipped default models (Explain runs on each open),
then ``--switches`` times: a CT case, until its overlays are in (or ``--wait`` s), then
a slide at once, then a skin photo, each shown for a few event-loop turns. A crash ends
the process with -11 (139 from a shell); otherwise it prints ``survived``.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/repro_switch_crash.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--switches", type=int, default=50)
    ap.add_argument("--wait", type=float, default=10.0, help="seconds for the CT overlays")
    ap.add_argument(
        "--cases", default="ct,slide,skin", help="modalities opened in turn (first: overlays)"
    )
    ap.add_argument("--window", default="", help="main window size WxH (default napari's)")
    args = ap.parse_args()

    from qtpy.QtCore import QEventLoop, QTimer

    from napari_wsseg.launch import launch
    from napari_wsseg.phantoms.demo import DEMO_COUNTS, DEMO_EXPERT, DEMO_SIZES, make_study
    from napari_wsseg.training.defaults import install_default_models

    def run_loop(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    root = Path(tempfile.mkdtemp(prefix="wsseg-switch-")) / "study"
    make_study(root, DEMO_COUNTS, DEMO_EXPERT, seed=0, sizes=DEMO_SIZES).close()
    install_default_models(root)
    viewer = launch(str(root), run=False)
    if args.window:
        viewer.window._qt_window.resize(*(int(v) for v in args.window.split("x")))
    browser = viewer.window.dock_widgets["Study browser (napari-wsseg)"]
    first, *rest = (browser.study.images(m)[0].id for m in args.cases.split(","))
    with_maps = 0
    t0 = time.perf_counter()
    for k in range(args.switches):
        browser.open_image(first)
        t1 = time.perf_counter()
        while time.perf_counter() - t1 < args.wait:
            if any("wsseg_map" in ly.metadata for ly in viewer.layers):
                with_maps += 1
                break
            run_loop(20)
        for image_id in rest:  # at once, overlays on screen
            browser.open_image(image_id)
            run_loop(30)
        print(f"switch {k + 1}: ok", flush=True)
    print(
        f"survived {args.switches} switches ({with_maps} with the CT overlays on screen) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    viewer.close()


if __name__ == "__main__":
    main()
