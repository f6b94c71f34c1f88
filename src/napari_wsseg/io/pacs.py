"""A PACS over DICOMweb (dicomweb-client): search (QIDO-RS), retrieve (WADO-RS), store (STOW-RS).

The server comes from the user's config file, never from the study: by default
``$XDG_CONFIG_HOME/napari-wsseg/config.yaml`` (``~/.config/...``; the
``WSSEG_CONFIG`` environment variable names another)::

    pacs:
      default: hospital
      servers:
        hospital:
          url: https://pacs.example.org/dicom-web
          username: alice
          password_env: WSSEG_PACS_PASSWORD   # or password: ... (file kept private)
          ca_bundle: /etc/ssl/certs/hospital-ca.pem   # TLS: verify with this CA
          client_cert: /home/alice/.ssl/alice.pem      # optional mutual TLS
          timeout: 30        # seconds per request
          attempts: 2        # tries per request (busy servers answer 503)

HTTP basic auth and TLS are requests' (``session.auth``, ``session.verify``,
``session.cert``), the way dicomweb-client takes them. Errors name the server by
its config name, never its URL or credentials. Retrieval writes one instance at a
time to a folder (memory stays at one instance) and reports progress.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import requests
import yaml

Progress = Callable[[int, int], None]

# QIDO attributes asked for and shown for each series (keyword -> tag).
SERIES_FIELDS = {
    "PatientID": "00100020",
    "PatientName": "00100010",
    "AccessionNumber": "00080050",
    "StudyDate": "00080020",
    "StudyDescription": "00081030",
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SeriesNumber": "00200011",
    "SeriesDescription": "0008103E",
    "Modality": "00080060",
    "NumberOfSeriesRelatedInstances": "00201209",
}


class PacsError(OSError):
    """A PACS request failed; the message names the server (by config name) and the step."""


@dataclass
class PacsConfig:
    """One DICOMweb server from the user's config (credentials stay in memory only)."""

    name: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    verify: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 30.0
    attempts: int = 2

    def __repr__(self) -> str:  # never show the password (dataclass repr=False) or URL auth
        return f"PacsConfig(name={self.name!r}, user={self.username!r})"


def config_path() -> Path:
    """Where the user's config lives (``WSSEG_CONFIG``, else XDG config home)."""
    if os.environ.get("WSSEG_CONFIG"):
        return Path(os.environ["WSSEG_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "napari-wsseg" / "config.yaml"


def load_config(server: str | None = None, path: str | Path | None = None) -> PacsConfig:
    """The server ``server`` (default: the config's ``default``, or its only one)."""
    path = Path(path) if path is not None else config_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no PACS config; create it with a 'pacs: servers: <name>: url: ...' entry"
        )
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    servers = (doc.get("pacs") or {}).get("servers") or {}
    if not servers:
        raise ValueError(f"{path}: no 'pacs: servers:' entries")
    name = server or (
        doc["pacs"].get("default") or (next(iter(servers)) if len(servers) == 1 else None)
    )
    if name is None:
        raise ValueError(f"{path}: several PACS servers and no 'default'; name one")
    if name not in servers:
        raise KeyError(f"{path}: no PACS server {name!r} (has {', '.join(sorted(servers))})")
    entry = dict(servers[name])
    if not entry.get("url"):
        raise ValueError(f"{path}: PACS server {name!r} has no url")
    password = entry.pop("password", None)
    env = entry.pop("password_env", None)
    if env:
        password = os.environ.get(env)
        if password is None:
            raise ValueError(f"{path}: PACS server {name!r} reads its password from ${env}, unset")
    known = set(PacsConfig.__dataclass_fields__) - {"name", "password"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{path}: PACS server {name!r}: unknown key(s) {unknown}")
    return PacsConfig(name=name, password=password, **entry)


def _value(item: dict, keyword: str) -> Any:
    """A DICOM JSON attribute's first value as text (PersonName: its Alphabetic form)."""
    values = item.get(SERIES_FIELDS[keyword], {}).get("Value") or [None]
    v = values[0]
    if isinstance(v, dict):
        v = v.get("Alphabetic", "")
    return v


@dataclass
class SeriesHit:
    """One series found by a search."""

    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    study_uid: str
    series_uid: str
    series_number: int | None
    description: str
    modality: str
    n_instances: int | None

    @classmethod
    def from_json(cls, item: dict) -> SeriesHit:
        number, count = (
            _value(item, "SeriesNumber"),
            _value(item, "NumberOfSeriesRelatedInstances"),
        )
        return cls(
            patient_id=str(_value(item, "PatientID") or ""),
            patient_name=str(_value(item, "PatientName") or ""),
            accession=str(_value(item, "AccessionNumber") or ""),
            study_date=str(_value(item, "StudyDate") or ""),
            study_uid=str(_value(item, "StudyInstanceUID") or ""),
            series_uid=str(_value(item, "SeriesInstanceUID") or ""),
            series_number=int(number) if number is not None else None,
            description=str(_value(item, "SeriesDescription") or ""),
            modality=str(_value(item, "Modality") or ""),
            n_instances=int(count) if count is not None else None,
        )


def _date_filter(date: str) -> str:
    """'2026-12-01', '20261201' or a range '20260101-20261231' as a DICOM date (range)."""
    parts = [p.replace("-", "") for p in re.split(r"(?<=\d)-(?=\d{8}$|\d{4}-\d\d-\d\d$)", date)]
    if not all(re.fullmatch(r"\d{8}", p) for p in parts) or len(parts) > 2:
        raise ValueError(f"date {date!r}: expected YYYYMMDD, YYYY-MM-DD or a range A-B")
    return "-".join(parts)


class Pacs:
    """A DICOMweb connection built from a :class:`PacsConfig`."""

    def __init__(self, config: PacsConfig) -> None:
        from dicomweb_client import DICOMwebClient
        from dicomweb_client.session_utils import create_session

        self.config = config
        session = create_session()
        if config.username:
            session.auth = (config.username, config.password or "")
        session.verify = config.ca_bundle or config.verify
        if config.client_cert:
            session.cert = (
                (config.client_cert, config.client_key)
                if config.client_key
                else config.client_cert
            )
        self.client = DICOMwebClient(config.url, session=session, timeout=config.timeout)
        # dicomweb-client retries every failure (a refused connection too) 5 times with
        # 2-16 s waits; a dead server should fail in about a second, not half a minute
        self.client.set_http_retry_params(
            retry=config.attempts > 1,
            max_attempts=max(1, config.attempts),
            wait_exponential_multiplier=250,
        )

    def _fail(self, step: str, exc: Exception) -> PacsError:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"HTTP {status}" if status else type(exc).__name__
        if status == 401:
            why += " (check the username / password in the config)"
        return PacsError(f"PACS {self.config.name!r}: {step} failed: {why}")

    def search(
        self,
        patient_id: str | None = None,
        accession: str | None = None,
        modality: str | None = None,
        date: str | None = None,
        patient_name: str | None = None,
        limit: int = 200,
    ) -> list[SeriesHit]:
        """Series matching all given filters (QIDO-RS; ``*`` wildcards as DICOM allows)."""
        filters = {
            k: v
            for k, v in {
                "PatientID": patient_id,
                "PatientName": patient_name,
                "AccessionNumber": accession,
                "Modality": modality,
                "StudyDate": _date_filter(date) if date else None,
            }.items()
            if v
        }
        try:
            found = self.client.search_for_series(
                search_filters=filters, fields=list(SERIES_FIELDS), limit=limit
            )
        except (requests.RequestException, OSError) as exc:
            raise self._fail("search", exc) from None
        hits = [SeriesHit.from_json(item) for item in found]
        return sorted(hits, key=lambda h: (h.patient_id, h.study_date, h.series_number or 0))

    def series(self, series_uid: str) -> SeriesHit:
        """The one series with this SeriesInstanceUID; KeyError if the server has none."""
        try:
            found = self.client.search_for_series(
                search_filters={"SeriesInstanceUID": series_uid}, fields=list(SERIES_FIELDS)
            )
        except (requests.RequestException, OSError) as exc:
            raise self._fail(f"looking up series {series_uid}", exc) from None
        if not found:
            raise KeyError(f"PACS {self.config.name!r} has no series {series_uid}")
        return SeriesHit.from_json(found[0])

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """SOPInstanceUIDs of one series (QIDO-RS)."""
        try:
            found = self.client.search_for_instances(
                study_uid, series_uid, fields=["00080018"], get_remaining=True
            )
        except (requests.RequestException, OSError) as exc:
            raise self._fail(f"listing series {series_uid}", exc) from None
        return [str(item["00080018"]["Value"][0]) for item in found]

    def iter_retrieve(
        self, study_uid: str, series_uid: str, folder: str | Path
    ) -> Iterator[tuple[int, int]]:
        """Download one series into ``folder``, one instance at a time (WADO-RS),
        yielding (instances done, total) after each. A failure raises
        :class:`PacsError` saying how far it got; the caller discards the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        uids = self.instance_uids(study_uid, series_uid)
        if not uids:
            raise PacsError(f"PACS {self.config.name!r}: series {series_uid} has no instances")
        for i, uid in enumerate(uids):
            try:
                ds = self.client.retrieve_instance(study_uid, series_uid, uid)
            except (requests.RequestException, OSError) as exc:
                err = self._fail(f"retrieving instance {i + 1} of {len(uids)}", exc)
                raise err from None
            ds.save_as(folder / f"IM{i:05d}.dcm", enforce_file_format=True)
            del ds
            yield i + 1, len(uids)

    def retrieve_series(
        self, study_uid: str, series_uid: str, folder: str | Path, progress: Progress | None = None
    ) -> list[Path]:
        """:meth:`iter_retrieve` to the end, calling ``progress(done, total)``; the files."""
        for done, total in self.iter_retrieve(study_uid, series_uid, folder):
            if progress is not None:
                progress(done, total)
        return sorted(Path(folder).glob("IM*.dcm"))

    def store(self, paths: Iterable[str | Path]) -> list[str]:
        """Send DICOM files to the server (STOW-RS), one request each; their SOP UIDs."""
        stored = []
        for path in paths:
            ds = pydicom.dcmread(path)
            try:
                response = self.client.store_instances([ds])
            except (requests.RequestException, OSError) as exc:
                raise self._fail(f"storing {path}", exc) from None
            failed = response.get("FailedSOPSequence") if response is not None else None
            if failed:
                reason = failed[0].get("FailureReason", "?")
                raise PacsError(f"PACS {self.config.name!r} refused {path} (reason {reason})")
            stored.append(str(ds.SOPInstanceUID))
        return stored
