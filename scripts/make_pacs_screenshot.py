"""Screenshot of the study browser's PACS dialog for docs (``docs/images/pacs_search.png``).

Run under Xvfb (needs Debian's orthanc + orthanc-dicomweb)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_pacs_screenshot.py

It starts a local Orthanc loaded with the test data (a generated CT series, a CR,
pydicom's CT_small and MR_small), writes a client config for it, opens napari with
the study browser on a new study, searches the PACS from the dialog, retrieves the
CT series with the label pdac=1, opens it, and grabs the screen (napari window +
dialog; Xvfb has no window manager, so the dialog has no title bar).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "io"))


def wait(app, cond, timeout: float = 60.0) -> None:
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            raise TimeoutError(f"gave up waiting after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    import imageio.v3 as iio
    import napari
    import numpy as np
    from orthanc_server import PASSWORD, OrthancServer, load_test_data, write_client_config
    from qtpy.QtWidgets import QApplication

    from napari_wsseg.widgets.qt_study_browser import QtStudyBrowser

    tmp = Path(tempfile.mkdtemp(prefix="wsseg-shot-"))
    server = OrthancServer(tmp / "orthanc")
    server.start()
    try:
        load_test_data(server, tmp / "data")
        os.environ["WSSEG_CONFIG"] = str(write_client_config(tmp / "wsseg.yaml", server))
        os.environ["WSSEG_TEST_PACS_PASSWORD"] = PASSWORD
        viewer = napari.Viewer(title="napari-wsseg")
        viewer.window._qt_window.setGeometry(0, 0, 1600, 1000)
        browser = QtStudyBrowser(viewer)
        viewer.window.add_dock_widget(browser, name="Study browser (napari-wsseg)")
        browser.open_study(tmp / "study")
        app = QApplication.instance()
        dialog = browser.open_pacs()
        dialog.setGeometry(290, 400, 800, 560)
        dialog.date.setText("20261101-20261130")
        done = []
        dialog.searched.connect(done.append)
        dialog.search()
        wait(app, lambda: done)
        dialog.select([i for i, h in enumerate(dialog.hits) if h["modality"] == "CT"])
        dialog.labels.setText("pdac=1")
        got = []
        dialog.retrieved.connect(got.append)
        dialog.retrieve_selected()
        wait(app, lambda: got)
        browser.refresh()
        browser.open_image(got[0][0])  # the retrieved CT behind the dialog
        wait(app, lambda: len(viewer.layers) > 0)
        shot = app.primaryScreen().grabWindow(0).toImage()
        w, h = shot.width(), shot.height()
        ptr = shot.constBits()
        ptr.setsize(h * shot.bytesPerLine())
        arr = np.frombuffer(ptr, np.uint8).reshape(h, shot.bytesPerLine() // 4, 4)[:, :w, :3]
        rgb = arr[..., ::-1]  # BGRA -> RGB
        from skimage.transform import resize

        small = (resize(rgb, (h * 1280 // w, 1280), anti_aliasing=True) * 255).astype(np.uint8)
        out = ROOT / "docs" / "images" / "pacs_search.png"
        iio.imwrite(out, small, extension=".png", optimize=True)
        print(f"{out}: {out.stat().st_size // 1024} KB; retrieved {got}")
        viewer.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
