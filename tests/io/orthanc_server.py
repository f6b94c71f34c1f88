"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for PACS tests.

:class:`OrthancServer` runs the ``Orthanc`` binary on a free localhost port with a
temporary storage folder, HTTP basic auth on, and the DICOMweb plugin; ``kill``
stops it hard (a server dying mid-request), ``start`` brings it back on the same
port and storage.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
USER, PASSWORD = "alice", "s3cret-test"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None
    )


def dicomweb_plugin() -> str | None:
    for folder in PLUGIN_DIRS:
        path = Path(folder) / "libOrthancDicomWeb.so"
        if path.is_file():
            return str(path)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancServer:
    """One Orthanc process; ``url`` is its DICOMweb root."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        storage = folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "wsseg-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Ssl": False},
            "HttpThreadsCount": 4,
        }
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/dicom-web"

    def rest(self, method: str, path: str, **kw) -> requests.Response:
        """Orthanc's own REST API (to load and inspect the store, not under test)."""
        r = requests.request(method, self.base + path, auth=(USER, PASSWORD), timeout=30, **kw)
        r.raise_for_status()
        return r

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen(
            [orthanc_binary(), str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}); see {log.name}")
            try:
                self.rest("GET", "/system")
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer on port {self.port} in {timeout} s")

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crashed server would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def upload(self, paths) -> None:
        """Load DICOM files through Orthanc's REST API."""
        for path in paths:
            self.rest("POST", "/instances", data=Path(path).read_bytes())


def load_test_data(server: OrthancServer, folder: Path) -> dict:
    """Put real and generated DICOM into ``server``: a generated 6-slice CT series
    (patient P-CT, accession ACC-CT, 2026-11-03), a CR (P-CR, ACC-CR, 2026-11-20)
    and pydicom's real CT_small and MR_small. Returns the UIDs by name."""
    import pydicom
    from dicom_factory import make_projection
    from pydicom.data import get_testdata_file
    from test_io_dicom_series import STEP, _make_series

    ct_dir = folder / "ct"
    _make_series(
        ct_dir,
        list(range(6)),
        PatientID="P-CT",
        AccessionNumber="ACC-CT",
        StudyDate="20261103",
        SeriesDescription="Abdomen venous",
        SeriesNumber=3,
        SpacingBetweenSlices=STEP,
        SliceThickness=STEP,
    )
    cr = make_projection(
        folder / "cr" / "chest.dcm",
        "CR",
        PatientID="P-CR",
        AccessionNumber="ACC-CR",
        StudyDate="20261120",
        SeriesDescription="Chest PA",
    )
    real = [get_testdata_file(n, download=False) for n in ("CT_small.dcm", "MR_small.dcm")]
    files = sorted(ct_dir.iterdir())
    server.upload([*files, folder / "cr" / "chest.dcm", *real])
    ct = pydicom.dcmread(files[0], stop_before_pixels=True)
    return {
        "ct_study": str(ct.StudyInstanceUID),
        "ct_series": str(ct.SeriesInstanceUID),
        "ct_folder": ct_dir,
        "cr_study": str(cr.StudyInstanceUID),
        "cr_series": str(cr.SeriesInstanceUID),
        "cr_file": folder / "cr" / "chest.dcm",
    }


def write_client_config(path: Path, server: OrthancServer) -> Path:
    """A user config naming the server 'test-pacs'; its password is read from
    ``$WSSEG_TEST_PACS_PASSWORD`` (the caller sets it)."""
    path.write_text(
        "pacs:\n  default: test-pacs\n  servers:\n    test-pacs:\n"
        f"      url: {server.url}\n      username: {USER}\n"
        "      password_env: WSSEG_TEST_PACS_PASSWORD\n      timeout: 10\n"
    )
    return path
