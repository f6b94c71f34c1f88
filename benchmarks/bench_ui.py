"""UI responsiveness while a training job runs, and the time to open each dock.

Run under a display: ``xvfb-run -a .venv/bin/python benchmarks/bench_ui.py [--quick]``.

1. Opening: each dock added to a fresh viewer with ``add_plugin_dock_widget`` (first
   time in the process, so module imports count), timed on the Qt thread.
2. Lateness: a 10 ms QTimer on the viewer's thread, run by the real Qt event loop,
   records how late each tick comes; first idle (reference), then for ``--seconds``
   while a job started from the Retrain dock trains in its own process (the dock's
   own 500 ms progress polling included).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

DOCKS = ("Study browser", "Explain", "Correct mask", "Retrain")
OPEN_COLUMNS = ["case open", "opens", "p50 stall (ms)", "max stall (ms)",
                "longest step (ms)", "longest paint (ms)", "p50 open (ms)"]  # fmt: skip


def run_loop(ms: int) -> None:
    """Run the Qt event loop for ``ms`` milliseconds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def measure_lateness(seconds: float, interval_ms: int = 10) -> np.ndarray:
    """Lateness (ms) of each tick of a repeating ``interval_ms`` QTimer over ``seconds``."""
    from qtpy.QtCore import QElapsedTimer, Qt, QTimer

    clock = QElapsedTimer()
    late: list[float] = []
    last = [0.0]
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(interval_ms)

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        late.append(max(0.0, now - last[0] - interval_ms))
        last[0] = now

    timer.timeout.connect(tick)
    clock.start()
    timer.start()
    run_loop(int(seconds * 1000))
    timer.stop()
    return np.array(late[1:])


SMALL = {"image_size": "64", "layers": "1,1,1", "widths": "16,32,64", "per_class": "4"}


def stats(arr: np.ndarray) -> list[float]:
    return [len(arr), np.percentile(arr, 50), np.percentile(arr, 99), float(arr.max())]


def while_training(retrain, seconds: float) -> tuple[np.ndarray, int]:
    """Start a job from the dock; timer lateness over ``seconds`` once it steps."""
    retrain.start()
    t0 = time.perf_counter()
    while not any(e.get("event") == "step" for e in retrain.job.events):
        if time.perf_counter() - t0 > 180:
            raise TimeoutError(f"no training step after 180 s: {retrain.job.log_tail()}")
        run_loop(100)
    busy = measure_lateness(seconds)
    n_steps = sum(1 for e in retrain.job.events if e.get("event") == "step")
    retrain.cancel()
    while retrain.job.running:
        run_loop(100)
    run_loop(600)  # the dock's last poll
    return busy, n_steps


def open_times(study: Path) -> list[list[object]]:
    """Seconds to add each dock to a fresh viewer with a case open."""
    import napari

    viewer = napari.Viewer(show=True)
    rows = []
    for name in DOCKS:
        t0 = time.perf_counter()
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-wsseg", name)
        rows.append([f"{name} dock", time.perf_counter() - t0])
        run_loop(50)
        if name == "Study browser":
            t0 = time.perf_counter()
            widget.open_study(study)
            rows.append(["(open the sample study in the browser)", time.perf_counter() - t0])
            t0 = time.perf_counter()
            widget.open_row(0)
            rows.append(["(open its first case: a CT volume)", time.perf_counter() - t0])
    viewer.close()
    return rows


_WORK: dict[str, list[float]] = {"step": [], "paint": []}


def probe_work() -> None:
    """Time each step the browser runs between two turns of the event loop
    (``qt_steps.Steps._next``) and each window paint (napari's main window handling an
    ``UpdateRequest``, private): a stall is about one of each, and the paint is what a
    software GL makes slow."""
    from napari._qt.qt_main_window import _QtMainWindow
    from qtpy.QtCore import QEvent

    from napari_wsseg.widgets import qt_steps

    def timed(kind, fn):
        def call(self, *args):
            if kind == "paint" and args[0].type() != QEvent.Type.UpdateRequest:
                return fn(self, *args)
            t0 = time.perf_counter()
            try:
                return fn(self, *args)
            finally:
                _WORK[kind].append((time.perf_counter() - t0) * 1e3)

        return call

    qt_steps.Steps._next = timed("step", qt_steps.Steps._next)
    _QtMainWindow.event = timed("paint", _QtMainWindow.event)


def open_block(browser, image_id: int, background: bool) -> tuple[float, ...]:
    """Longest UI stall (ms) while image ``image_id`` opens: the largest gap between
    ticks of a 10 ms QTimer, from the request until the case is on screen + 300 ms;
    with the longest step and paint in that time (:func:`probe_work`), and the time
    from the request to the case-opened event (ms)."""
    from qtpy.QtCore import QTimer

    from napari_wsseg.widgets import _slots

    stop = ticking()
    run_loop(50)
    for kind in _WORK:
        _WORK[kind].clear()
    opened: list[float] = []
    emitter = _slots.case_opened(browser.viewer)

    def seen(_event) -> None:
        opened.append(time.perf_counter())

    emitter.connect(seen)
    # the request comes from a timer tick, as a double-click would: its own time counts
    QTimer.singleShot(0, lambda: browser.open_image(image_id, background=background))
    t0 = time.perf_counter()
    while browser.current_id != image_id and time.perf_counter() - t0 < 60:
        run_loop(20)
    run_loop(300)
    emitter.disconnect(seen)
    took = (opened[0] - t0) * 1e3 if opened else float("nan")
    step, paint = max(_WORK["step"], default=0.0), max(_WORK["paint"], default=0.0)
    return float(stop().max()), step, paint, took


def open_row(label: str, opens: list[tuple[float, ...]]) -> list[object]:
    """A table row: stalls p50 and max, the longest step and paint of any open, and the
    p50 time to open."""
    arr = np.array(opens)
    return [label, len(arr), np.percentile(arr[:, 0], 50), arr[:, 0].max(), arr[:, 1].max(),
            arr[:, 2].max(), np.percentile(arr[:, 3], 50)]  # fmt: skip


def ticking():
    """A 10 ms QTimer running; returns ``stop()``, which gives the longest gaps (ms)."""
    from qtpy.QtCore import QElapsedTimer, Qt, QTimer

    clock, gaps, last = QElapsedTimer(), [], [0.0]

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        gaps.append(max(0.0, now - last[0] - 10))
        last[0] = now

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(tick)
    clock.start()
    timer.start()

    def stop() -> np.ndarray:
        timer.stop()
        return np.array(gaps[1:])

    return stop


def prepare_row(browser) -> list[object]:
    """The stalls while the browser makes spare layers ahead (``qt_prepare``), from the
    first case on screen until it is done (+300 ms), nothing else asked for."""
    from napari_wsseg.widgets import _slots

    stop = ticking()
    t0 = time.perf_counter()
    while browser.prepare.busy and time.perf_counter() - t0 < 60:
        run_loop(20)
    took = time.perf_counter() - t0
    run_loop(300)
    gaps = stop()
    made = len(_slots.spares(browser.viewer))
    return [made, took, int((gaps > 100).sum()), np.percentile(gaps, 99), float(gaps.max())]


def first_of_kind(browser) -> list[tuple[float, ...]]:
    """Each image once in table order; the stalls of the first of each modality."""
    recs = browser.study.images()
    shown = browser.current_id  # the case launch opened
    first, seen = [], {browser.study.image(shown).modality} if shown else set()
    for rec in recs:  # also the warm-up: imports, caches, the docks' first layouts
        stall = open_block(browser, rec.id, background=True)
        if rec.modality not in seen:
            first.append(stall)
            seen.add(rec.modality)
    return first


def case_open_rows(viewer, browser, passes: int = 3) -> list[list[object]]:
    """UI stall per case open over the whole sample study, read in a worker as a
    double-click does. First each image once in table order: a case of a kind not seen
    yet in the session gets fresh layers (its own row). Then ``passes`` times each
    image after another of its modality (the case layers are reused), and after one
    of another modality (the pair on screen is parked, a spare of the kind comes back)."""
    recs = browser.study.images()
    ids = [rec.id for rec in recs]
    same, other = {}, {}
    for k, rec in enumerate(recs):
        mates = [r.id for r in recs if r.modality == rec.modality and r.id != rec.id]
        same[rec.id] = mates[0] if mates else rec.id
        # the previous image of another modality in the table (wraps around)
        other[rec.id] = next(r.id for r in recs[k::-1] + recs[:k:-1] if r.modality != rec.modality)
    first = first_of_kind(browser)
    rows = [open_row("first case of its kind in the session (spare made ahead)", first)]
    for label, before in (
        ("after a case of the same modality (layers reused)", same),
        ("after a case of another modality (a spare pair taken back)", other),
    ):
        stalls = []
        for _ in range(passes):
            for image_id in ids:
                browser.open_image(before[image_id])
                run_loop(50)
                stalls.append(open_block(browser, image_id, background=True))
        rows.append(open_row(label, stalls))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--method", default="manifold")
    parser.add_argument("--quick", action="store_true", help="5 s windows instead of 20 s")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds

    import napari

    from napari_wsseg.launch import launch
    from napari_wsseg.phantoms.demo import DEMO_COUNTS, DEMO_EXPERT, DEMO_SIZES, make_study

    tmp = Path(tempfile.mkdtemp(prefix="wsseg-ui-"))
    study = tmp / "study"
    make_study(study, DEMO_COUNTS, DEMO_EXPERT, seed=0, sizes=DEMO_SIZES)
    opening = open_times(study)  # first: module imports are part of the cost

    probe_work()
    viewer = launch(str(study), run=False)
    retrain = viewer.window.dock_widgets["Retrain (napari-wsseg)"]
    browser = viewer.window.dock_widgets["Study browser (napari-wsseg)"]
    prepare = prepare_row(browser)
    case_rows = case_open_rows(viewer, browser)
    # the same first opens with nothing made ahead, in a second viewer (after the
    # first: the process is warmer, which favours this row, not the one above)
    bare = launch(str(study), run=False)
    bare_browser = bare.window.dock_widgets["Study browser (napari-wsseg)"]
    bare_browser.prepare.cancel()
    bare_browser.prepare.enabled = False
    run_loop(1000)
    bare_first = first_of_kind(bare_browser)
    bare.close()
    case_rows.insert(
        1, open_row("first case of its kind, nothing made ahead (second viewer)", bare_first)
    )
    print(markdown_table(OPEN_COLUMNS, case_rows))
    modality = {"manifold": "skin", "chexseg": "xray", "iagnet": "ct", "glam": "mammo"}
    first = browser.study.images(modality.get(args.method, "skin"))[0].id
    browser.open_row(browser.row_of(first))
    retrain.method.setCurrentText(args.method)
    retrain.steps.setValue(100000)  # keeps training through the whole window

    # let the docks settle (Retrain reads the method's defaults in a worker thread)
    t0 = time.perf_counter()
    while retrain.settings.rowCount() == 0 and time.perf_counter() - t0 < 60:
        run_loop(100)
    run_loop(1000)
    idle = measure_lateness(min(5.0, seconds))
    rows = [["idle (reference)", "-", *stats(idle)]]
    runs = [("paper-default config", {})]
    if args.method == "manifold":
        runs.append(("small config, many progress lines", SMALL))
    for label, sets in runs:
        for key, value in sets.items():
            retrain.set_setting(key, value)
        busy, n_steps = while_training(retrain, seconds)
        rows.append([f"training: {label}", n_steps, *stats(busy)])
    viewer.close()

    met = all(r[4] < 30 and r[5] < 100 for r in rows[1:])
    slow = [r[0] for r in opening if r[1] >= 1.0 and r[0].endswith("dock")]
    body = (
        "**Opening a dock** (added to a fresh viewer with `add_plugin_dock_widget`, first "
        "time in the process so imports count, except matplotlib's: the Retrain dock's "
        "loss plot imports it in a worker and builds its figure (30 ms) when it returns; "
        "opening the "
        f"{sum(DEMO_COUNTS.values())}-image sample study and its first case shown apart). "
        "Goal < 1 s a dock: "
        f"**{'met' if not slow else 'NOT met for ' + ', '.join(slow)}**.\n\n"
        + markdown_table(["dock", "open (s)"], opening)
        + "\n\n**UI stall per case open** (issue 13: opening a 128x128 PNG blocked the UI "
        "1.3-2.4 s): the longest gap between ticks of a 10 ms QTimer from the request "
        "(double-click path: files read in a worker) to 300 ms after the case is shown, "
        f"each of the {sum(DEMO_COUNTS.values())} sample images opened 3 times after a "
        "case of its modality and 3 times after one of another; no model versions in the "
        "study, so no Explain runs; 1600x1000 Xvfb screen, Mesa llvmpipe (software GL, "
        "so a paint costs 15-55 ms). What it took: napari runs a full `gc.collect()` for "
        "each removed layer (`VispyCanvas._remove_layer`, ~0.6 s with torch and napari on "
        "the heap) and a fresh layer costs 0.1-0.25 s (vispy visual, Labels overlays, "
        "layer controls). A case of the same kind reuses the image and mask layers "
        "(`widgets/_slots.py`: data, placement, contrast, name and metadata updated under "
        "one refresh and one slider recompute). A case of another kind parks the pair on "
        "screen as a hidden one-pixel spare (on the new case's first pixel, so it changes "
        "neither the sliders nor the fitted view) and takes back the spare of its own "
        "kind, at most 6 pairs; the browser puts it on screen in 8-14 steps, one per turn "
        "of the event loop (last case off, the rest of it parked with one scene-graph "
        "rebuild, spares moved two a step, the spare image's pixels drawn unseen, the "
        "view fitted and the image shown, the spare mask shown, its pixels, sliders, "
        "order, selection, legend), so no single stall holds all of it, and the sliders "
        "are recomputed once. A parked spare skips napari's update of each layer at each "
        "canvas paint (`_slots.idle`: 0.8 ms a layer a paint) and has no row in the "
        "layer list (`qt_layer_rows`: a list paint draws each row, ~2 ms): with 8 spares "
        "the two cut the p50 stall 5-11 ms (alternating opens, one process). One slider "
        "row is kept under the canvas for a 2D case too "
        "(`qt_layout.keep_slider_row`): a slider shown or hidden resized the canvas and "
        "repainted it twice (50-65 ms). Removals go in one batch and collect only "
        "the objects made since the long-lived heap was frozen (`_slots.settle_heap`). "
        "The first case of a kind would have no spare yet and pay the fresh layers "
        "(napari's `add_image` / `add_labels`, 115-230 ms each), the first draw of each "
        "new visual (vispy parses its shader code: 30-140 ms) and of new characters "
        "(napari renders each glyph into its font atlas at first use, 5-13 ms a "
        "character: the first X-ray legend held a paint 0.3 s). So once a study's first "
        "case is on screen the browser makes those ahead in idle time "
        "(`widgets/_prepare.py`, `qt_prepare.py`): it reads one image of each other "
        "modality in a worker, renders the glyphs, draws the text overlay once, and adds "
        "a hidden one-pixel spare pair per kind, each layer drawn once (transparent), in "
        "steps 40 ms apart cut fine (3 glyphs; a layer's making, its insert, its "
        "controls, each of its slow overlays), held back while a worker thread runs (a "
        "step beside the Retrain dock's first worker, which imports torch, stalled 2-7x "
        "as long); a case open cancels the rest. Last it sends the move and resize "
        "events Qt holds back for widgets never shown (the spares' layer controls, menus, "
        "hidden dock pages), 30 ms of them a step: Qt sent them all at once, for the whole "
        "window, in the first paint of a widget with a graphics effect (napari draws a "
        "disabled layer control at half opacity, so the first 2D case after a CT one): "
        "60-120 ms more in that open. "
        "The cost moves to that idle time, it does not go: "
        f"{prepare[0]} layers in {prepare[1]:.1f} s, {prepare[2]} ticks more than 100 ms "
        f"late, p99 {prepare[3]:.0f} ms, longest {prepare[4]:.0f} ms (a user clicking "
        "then waits that long). The row 'nothing made ahead' is the same first opens in "
        "a second viewer with it turned off (run after, in a warmer process). "
        "Goal < 100 ms (p50 and max): same modality "
        f"**{'met' if case_rows[2][3] < 100 else 'NOT met'}**, another modality "
        f"**{'met' if case_rows[3][3] < 100 else 'NOT met'}**, first case of a kind "
        f"**{'met' if case_rows[0][3] < 100 else 'NOT met'}**. Machine load at the "
        f"run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. The last two columns: "
        "the longest step (the browser's and napari's work between two turns of the event "
        "loop) and the longest window paint (the widgets, then the canvas in software GL) "
        "of any open in the row; a stall is about one of each, so where a GPU paints in a "
        "few ms it is about the step. 'p50 open': from the request (the file read in a "
        "worker included) to the case-opened event, the last step.\n\n"
        + markdown_table(OPEN_COLUMNS, case_rows)
        + f"\n\n**Responsiveness**: a 10 ms QTimer on the viewer's thread, {seconds:.0f} s "
        f"while `{args.method}` trains in its own process, started from the Retrain dock "
        "(the dock polls the job's progress file every 500 ms): once with the paper's "
        "config, once with a small one that writes many progress lines a second. "
        "Goal p99 < 30 ms, max < 100 ms while training: "
        f"**{'met' if met else 'NOT met'}**.\n\n"
        + markdown_table(
            ["condition", "steps reported", "ticks", "p50 late (ms)", "p99 late (ms)", "max (ms)"],
            rows,
        )
    )
    print(body)
    write_section("ui", "UI responsiveness during training", body)
    napari.Viewer.close_all()


if __name__ == "__main__":
    main()
