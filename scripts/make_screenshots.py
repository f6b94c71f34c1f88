"""Screenshots for ``docs/guide.md``: the whole loop on the sample study, under Xvfb.

Run::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

It builds the sample study (``wsseg demo-data`` sizes) with the default model of each
method shipped in the package (``scripts/train_default_models.py`` makes them), opens
the viewer as ``make run`` does, opens a positive case per modality, runs Explain
and saves window screenshots to ``docs/images/``. PNGs are downscaled to stay small.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_wsseg.training.defaults import install_default_models

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("ct", "mammo", "slide", "xray", "skin")
METHOD = {
    "ct": "iagnet",
    "mammo": "glam",
    "slide": "distill",
    "xray": "chexseg",
    "skin": "manifold",
}

# The map shown instead of the method's first one (CheXseg's Grad-CAM at 128 px is a
# coarse 8x8 grid that hardly varies after a short training; its mask head localises).
SHOW = {"xray": "mask_prob"}


def build_study(root: Path):
    """The ``make run`` sample study (same counts and sizes as ``wsseg demo-data``)."""
    from napari_wsseg.phantoms.demo import DEMO_COUNTS, DEMO_EXPERT, DEMO_SIZES, make_study
    from napari_wsseg.study import Study

    if (root / "catalog.sqlite").exists():
        return Study.open(root)
    return make_study(root, DEMO_COUNTS, DEMO_EXPERT, seed=0, sizes=DEMO_SIZES)


def wait(app, cond, timeout: float = 120.0) -> None:
    """Process Qt events until ``cond()`` holds (or fail after ``timeout`` s)."""
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError(f"gave up waiting after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def save(viewer, path: Path, max_width: int = 960) -> None:
    """Window screenshot, downscaled to ``max_width`` px and written as PNG."""
    import imageio.v3 as iio
    from skimage.transform import resize

    shot = viewer.screenshot(canvas_only=False, flash=False)[..., :3]
    if shot.shape[1] > max_width:
        h = round(shot.shape[0] * max_width / shot.shape[1])
        shot = (resize(shot, (h, max_width), anti_aliasing=True) * 255).astype(np.uint8)
    iio.imwrite(path, shot, extension=".png", optimize=True)
    print(f"{path}: {path.stat().st_size // 1024} KB", flush=True)


def dock(viewer, name: str):
    widget = viewer.window.dock_widgets[f"{name} (napari-wsseg)"]
    widget.parent().raise_()
    return widget


def positive_case(study, modality: str) -> int:
    """The image of ``modality`` with the most positive image-level labels (first wins)."""
    best, n_best = study.images(modality)[0].id, 0
    for rec in study.images(modality):
        n = sum(bool(v and v > 0 and k != "normal") for k, v in rec.labels.items())
        if n > n_best:
            best, n_best = rec.id, n
    return best


def focus(viewer, modality: str, maps_layer, labels: dict, probs: dict) -> None:
    """Show the slice where the explanation is strongest, or the class the model is
    surest of among those the case is labelled with (the slider lands on a finding the
    image has, not on the map that spreads widest)."""
    data = np.asarray(maps_layer.data)
    if modality == "ct":
        z = int(np.argmax(data.reshape(data.shape[0], -1).max(axis=1)))
        viewer.dims.set_point(0, maps_layer.translate[0] + z * maps_layer.scale[0])
    elif data.ndim == 3 and modality in ("mammo", "xray"):
        classes = maps_layer.metadata.get("classes") or []
        score = data.reshape(data.shape[0], -1).mean(axis=1)
        if len(classes) == len(score):
            score = [probs.get(c, 0.0) if labels.get(c) else -1.0 for c in classes]
        viewer.dims.set_current_step(0, int(np.argmax(score)))


def explain_case(app, viewer, study, modality: str) -> None:
    browser = dock(viewer, "Study browser")
    image_id = positive_case(study, modality)
    browser.open_image(image_id)
    explain = dock(viewer, "Explain")
    for i in range(explain.models.count()):
        if explain.models.itemData(i)["method"] == METHOD[modality]:
            explain.models.setCurrentIndex(i)
    explain.explain()
    wait(app, lambda: explain.run_btn.isEnabled())
    if explain.probs.text().startswith("error"):
        raise RuntimeError(f"explain failed on {modality}: {explain.probs.text()}")
    if modality in SHOW:  # show this map instead of the method's first one
        for ly in viewer.layers:
            if "wsseg_map" in ly.metadata:
                ly.visible = ly.metadata["wsseg_map"] == SHOW[modality]
    maps = [ly for ly in viewer.layers if ly.visible and "wsseg_map" in ly.metadata]
    if maps:
        labels = next(r.labels for r in study.images(modality) if r.id == image_id)
        probs = dict(
            (k, float(v))
            for k, _, v in (ln.partition(": ") for ln in explain.probs.text().splitlines())
        )
        focus(viewer, modality, maps[0], labels, probs)
    viewer.reset_view()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--study", type=Path, help="start from a copy of this study (made and trained if missing)"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated shot names to (re)take, e.g. retrain_running; default all",
    )
    ap.add_argument(
        "--size",
        default="1600x1000",
        help="window size WxH; another than 1600x1000 names the explain shots "
        "explain_<modality>_<W>.png and takes them at full size (run Xvfb that size too)",
    )
    args = ap.parse_args()
    only = {s for s in args.only.split(",") if s}
    width, height = (int(v) for v in args.size.lower().split("x"))
    sized = (width, height) != (1600, 1000)

    def wanted(name: str) -> bool:
        return not only or name in only

    # the correct and retrain shots start from the skin case explained
    shown = [
        m
        for m in MODALITIES
        if wanted(f"{m}_explain")
        or (m == "slide" and wanted("slide_heatmap"))
        or (
            m == "skin"
            and any(map(wanted, ("correct_edit", "retrain_running", "compare_versions")))
        )
    ]
    work = Path(tempfile.mkdtemp(prefix="wsseg-shots-"))
    source = args.study or work / "study"
    build_study(source).close()
    install_default_models(source)
    for modality in shown:
        if not any((source / "models" / METHOD[modality]).glob("v*/weights.pt")):
            sys.exit(f"no {METHOD[modality]} model: run scripts/train_default_models.py")
    study_dir = work / "shown"  # a copy: the edits below leave the given study as it was
    shutil.copytree(source, study_dir)
    study = build_study(study_dir)
    args.out.mkdir(parents=True, exist_ok=True)

    from qtpy.QtWidgets import QApplication

    from napari_wsseg.launch import launch

    viewer = launch(str(study_dir), run=False, size=(width, height))
    app = QApplication.instance()
    wait(app, lambda: True)
    if wanted("make_run"):  # the window `make run` opens, once its first overlays are in
        explain = dock(viewer, "Explain")
        wait(app, lambda: any("wsseg_map" in ly.metadata for ly in viewer.layers), 300)
        wait(app, explain.run_btn.isEnabled, 300)
        if sized:
            save(viewer, args.out / f"make_run_{width}.png", max_width=width)
        else:
            save(viewer, args.out / "make_run.png")

    for modality in MODALITIES:
        if not (
            wanted(f"{modality}_explain") or (modality == "slide" and wanted("slide_heatmap"))
        ):
            continue
        explain_case(app, viewer, study, modality)
        if wanted(f"{modality}_explain") and sized:
            save(viewer, args.out / f"explain_{modality}_{width}.png", max_width=width)
        elif wanted(f"{modality}_explain"):
            save(viewer, args.out / f"{modality}_explain.png")
        if modality == "slide" and wanted("slide_heatmap"):
            for ly in viewer.layers:
                ly.visible = ly.metadata.get("wsseg_role") == "image" or ly.metadata.get(
                    "wsseg_map"
                ) in ("instance_prob",)
            save(viewer, args.out / "slide_heatmap.png")

    if not any(map(wanted, ("correct_edit", "retrain_running", "compare_versions"))):
        viewer.close()
        return
    # Correct: edit the predicted skin mask with a brush stroke, accept it.
    explain_case(app, viewer, study, "skin")
    correct = dock(viewer, "Correct mask")
    mask = next(ly for ly in viewer.layers if ly.metadata.get("wsseg_role") == "mask")
    h, w = mask.data.shape[-2:]
    mask.brush_size = max(4, w // 12)
    for x in range(w // 4, w // 2, 2):
        mask.paint((h // 3, x), 1)
    correct.accept()
    mask.paint((2 * h // 3, w // 3), 0)
    wait(app, lambda: True)
    if wanted("correct_edit"):
        save(viewer, args.out / "correct_edit.png")

    # Retrain: fine-tune the version selected in Explain (quick preset), mid-way.
    retrain = dock(viewer, "Retrain")
    retrain.method.setCurrentText("manifold")
    wait(app, lambda: retrain._plan is not None and retrain.settings.rowCount() > 0)
    retrain.steps.setValue(120)
    retrain.start()
    wait(app, lambda: sum(e.get("event") == "step" for e in retrain.job.events) >= 30, 300)
    retrain.plot.redraw()  # the plot redraws at most every 2 s; show every point so far
    wait(app, lambda: True)
    if wanted("retrain_running"):
        save(viewer, args.out / "retrain_running.png")
    # Compare: the finished version beside the current one, at a laptop's screen size
    wait(app, lambda: not retrain.job.running and not retrain.timer.isActive(), 600)
    explain = dock(viewer, "Explain")
    wait(app, lambda: explain.compare.new is not None, 60)
    wait(app, lambda: any(ly.metadata.get("wsseg_compare") for ly in viewer.layers), 300)
    wait(app, lambda: "…" not in explain.compare.note.text(), 300)
    for ly in viewer.layers:  # the new version's mask map over the current one's mask
        if ly.metadata.get("wsseg_map") and not ly.metadata.get("wsseg_compare"):
            ly.visible = False
    viewer.window._qt_window.resize(1366, 768)
    wait(app, lambda: True)
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget, QScrollArea

    def dock_of(widget):
        while widget is not None and not isinstance(widget, QDockWidget):
            widget = widget.parent()
        return widget

    # as a user drags the splitter: the Explain dock gets the height, the browser 8 rows
    docks = [dock_of(dock(viewer, "Study browser")), dock_of(explain)]
    if all(docks):
        viewer.window._qt_window.resizeDocks(docks, [300, 420], Qt.Orientation.Vertical)
        wait(app, lambda: True)
    area = explain.compare.parent()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parent()
    if area is not None:  # the Explain dock scrolls at 1366x768: show the comparison
        area.ensureWidgetVisible(explain.compare, 0, 0)
        area.horizontalScrollBar().setValue(0)  # its left edge, where the names are
    wait(app, lambda: True)
    if wanted("compare_versions"):
        save(viewer, args.out / "compare_versions.png", max_width=1366)
    viewer.close()


if __name__ == "__main__":
    main()
