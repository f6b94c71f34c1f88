"""Find the DICOM images under a folder and group them into series, from headers only.

Exports from PACS or CDs nest their files (``DICOM/PA000000/ST000000/SE000001/IM000001``,
no suffix), put a ``DICOMDIR``, notes and viewers beside them, and hold several
series: a scout, the axial series, reformats, a dose report without pixels. The
scan walks the tree (at most :data:`~.detect.MAX_DEPTH` levels, :data:`MAX_FILES`
files), keeps the files that are DICOM by content and hold an image (Rows), and
groups them by SeriesInstanceUID, then within a series by plane (a localizer
stored in the axial series becomes its own group) and by the LOCALIZER image type.
Single-file images that do not stack (no position outside CT / MR / PT, several
frames, colour) are groups of their own. Slice sizes are not a grouping key: an
odd-sized slice within a stack is reported as a damaged series, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from .base import ImageReadError
from .detect import MAX_DEPTH, walk_files
from .dicom import VOLUME_MODALITIES, geometry, read_header

MAX_FILES = 20000
# Direction cosines differing by more than this are another plane (about 6 degrees).
PLANE_TOLERANCE = 0.1
_PLANES = ("sagittal", "coronal", "axial")


def _number(ds: pydicom.Dataset) -> int | None:
    try:
        return int(ds.get("SeriesNumber"))
    except (TypeError, ValueError):
        return None


def _frames(ds: pydicom.Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def stands_alone(ds: pydicom.Dataset) -> bool:
    """Whether a file is an image of its own rather than a slice of a stack."""
    modality = str(ds.get("Modality", "")).upper()
    no_position = "ImagePositionPatient" not in ds and modality not in VOLUME_MODALITIES
    return no_position or _frames(ds) > 1 or int(ds.get("SamplesPerPixel", 1) or 1) > 1


def _is_localizer(ds: pydicom.Dataset) -> bool:
    return "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]


def _orientation(ds: pydicom.Dataset) -> np.ndarray:
    return np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)


@dataclass
class SeriesGroup:
    """Image files of one series that belong together (one volume or one 2D image).

    ``headers`` are (path, header without pixels) in file-name order; ``problem`` is
    a file found among these slices that is not readable DICOM (it may be a damaged
    slice); ``index`` is the group's place in :attr:`FolderScan.groups`.
    """

    uid: str
    number: int | None
    description: str
    modality: str
    headers: list[tuple[Path, pydicom.Dataset]]
    alone: bool = False
    localizer: bool = False
    shared_uid: bool = False
    problem: ImageReadError | None = None
    index: int = 0

    @property
    def n_files(self) -> int:
        return len(self.headers)

    @property
    def is_volume(self) -> bool:
        """Several slices, or one multi-frame file: something with a Z axis to scroll."""
        return self.n_files > 1 or _frames(self.headers[0][1]) > 1

    @property
    def plane(self) -> str:
        normal = geometry(self.headers[0][1])[2]
        axis = int(np.argmax(np.abs(normal)))
        return _PLANES[axis] if abs(normal[axis]) > 0.9 else "oblique"

    @property
    def label(self) -> str:
        """SeriesDescription, else 'series <SeriesNumber>'; the plane when a UID is shared."""
        name = self.description or (
            f"series {self.number}" if self.number is not None else f"series {self.uid[-8:]}"
        )
        if self.localizer and "localizer" not in name.lower():
            name += " localizer"
        return f"{name} {self.plane}" if self.shared_uid else name

    def rank(self) -> tuple[int, float]:
        """Sort key of the main-series rule: most slices first, then lowest SeriesNumber."""
        return (-self.n_files, self.number if self.number is not None else float("inf"))

    def summary(self, folder: Path) -> dict[str, Any]:
        """What the metadata says about this group (JSON-friendly)."""
        where = self.headers[0][0].parent
        return {
            "index": self.index,
            "uid": self.uid,
            "number": self.number,
            "description": self.description,
            "label": self.label,
            "modality": self.modality,
            "n_slices": self.n_files,
            "volume": self.is_volume,
            "folder": rel_path(folder, where) if where != folder else ".",
        }

    def accepts(self, ds: pydicom.Dataset) -> bool:
        ref = self.headers[0][1]
        return (
            not self.alone
            and not stands_alone(ds)
            and str(ds.get("SeriesInstanceUID", "")) == self.uid
            and _is_localizer(ds) == self.localizer
            and np.abs(_orientation(ds) - _orientation(ref)).max() <= PLANE_TOLERANCE
        )


@dataclass
class FolderScan:
    """The image groups found under ``folder``, main-series candidates first."""

    folder: Path
    groups: list[SeriesGroup]
    skipped: list[str] = field(default_factory=list)

    def find(self, series: str | int) -> SeriesGroup:
        """The group with this SeriesInstanceUID (its largest part) or index."""
        if isinstance(series, (int, np.integer)) and not isinstance(series, bool):
            if 0 <= series < len(self.groups):
                return self.groups[series]
        else:
            for group in self.groups:
                if group.uid == str(series).strip():
                    return group
        listed = "; ".join(f"{g.index}: {g.label!r} {g.uid}" for g in self.groups)
        raise ImageReadError(self.folder, f"no series {series!r} here; it holds {listed}")


def _group(images: list[tuple[Path, pydicom.Dataset]]) -> list[SeriesGroup]:
    groups: list[SeriesGroup] = []
    for path, ds in images:
        for group in groups:
            if group.accepts(ds):
                group.headers.append((path, ds))
                break
        else:
            groups.append(
                SeriesGroup(
                    uid=str(ds.get("SeriesInstanceUID", "")),
                    number=_number(ds),
                    description=str(ds.get("SeriesDescription", "") or "").strip(),
                    modality=str(ds.get("Modality", "")),
                    headers=[(path, ds)],
                    alone=stands_alone(ds),
                    localizer=_is_localizer(ds),
                )
            )
    groups.sort(key=lambda g: (*g.rank(), g.description, g.uid))
    for i, group in enumerate(groups):
        group.index = i
        group.shared_uid = sum(g.uid == group.uid for g in groups) > 1
    return groups


def rel_path(folder: Path, path: Any) -> str:
    """``path`` relative to ``folder`` (POSIX style), or whole when outside it."""
    path = Path(path)
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def _no_images(folder: Path, n_files: int, bad: list[ImageReadError], empty: list[str]) -> str:
    if empty:
        return f"no DICOM image here: its DICOM files hold no pixels ({'; '.join(empty[:3])})"
    names = ", ".join(rel_path(folder, e.path) for e in bad[:3])
    return f"no DICOM file among its {n_files} file(s) (e.g. {names}: {bad[0].problem})"


def scan_dicom_folder(
    folder: str | Path, max_depth: int = MAX_DEPTH, max_files: int = MAX_FILES
) -> FolderScan:
    """Read the headers of the DICOM files under ``folder`` and group them.

    Files that are not DICOM are skipped with a note, unless they lie among the
    slices of a single series: that series then carries the problem (it may be a
    damaged slice). Raises :class:`ImageReadError` when no DICOM image is found or
    the folder holds more than ``max_files`` files.
    """
    folder = Path(folder)
    too_deep: list[Path] = []
    files = []
    for path in walk_files(folder, max_depth, too_deep):
        if len(files) >= max_files:
            raise ImageReadError(
                folder,
                f"holds more than {max_files} files; open the study or series folder instead",
            )
        files.append(path)
    deep = f" (folders deeper than {max_depth} levels are not searched)" if too_deep else ""
    if not files:
        raise ImageReadError(folder, f"empty folder: no DICOM files to read{deep}")
    images, bad, empty = [], {}, []
    for path in files:
        try:
            ds = read_header(path, stop_before_pixels=True)
        except OSError as exc:
            bad.setdefault(path.parent, []).append(ImageReadError(path, f"cannot open ({exc})"))
            continue
        except ImageReadError as err:
            bad.setdefault(path.parent, []).append(err)
            continue
        if "Rows" in ds:
            images.append((path, ds))
        else:
            sop = ds.get("SOPClassUID")
            what = getattr(sop, "name", "") or str(ds.get("Modality", "")) or "no image"
            empty.append(f"{rel_path(folder, path)}: no pixels ({what})")
    if not images:
        problems = [e for errs in bad.values() for e in errs]
        raise ImageReadError(folder, _no_images(folder, len(files), problems, empty) + deep)
    scan = FolderScan(folder, _group(images), skipped=empty)
    for where, errors in bad.items():
        owners = [g for g in scan.groups if any(p.parent == where for p, _ in g.headers)]
        if len(owners) == 1 and owners[0].problem is None:
            owners[0].problem = errors[0]
        else:
            scan.skipped += [f"{rel_path(folder, e.path)}: {e.problem}" for e in errors]
    if too_deep:
        scan.skipped.append(f"{rel_path(folder, too_deep[0])}: deeper than {max_depth} levels")
    return scan
