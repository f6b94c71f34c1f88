"""DICOM folders: a series of slices -> one (Z, Y, X) volume in HU.

The folder may be a PACS / CD export: files are found by content under
sub-folders (:mod:`.dicom_scan`), ``DICOMDIR`` and non-DICOM files are skipped, and
files without pixels (dose reports) are noted and left out. Headers are read first
(no pixels) to validate each series: equal-sized, parallel slices at regular
positions, sorted by their ImagePositionPatient projected on the slice normal, then
decoded and rescaled.

**Main series.** A folder holding several series (or a localizer stored inside the
axial series) is read as its main series: the one with the most slices that reads
without error, ties broken by the lowest SeriesNumber (a tie that remains is an
error asking to choose). ``read_dicom_series(folder, series=UID or index)`` reads
another; ``meta['series']`` names the one read and ``meta['other_series']`` lists the
rest (uid, description, number of slices). :func:`read_dicom_folder` reads them all
(napari's reader shows each as a layer). With one series the errors are those of
that series (missing slices, mixed sizes, a non-DICOM file among the slices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from .base import ImageData, ImageReadError
from .dicom import (
    MODALITY_MAP,
    VOLUME_MODALITIES,
    base_meta,
    decode,
    geometry,
    header_window,
    read_dicom_file,
    read_header,
    rescale,
    volume_image,
)
from .dicom_scan import FolderScan, SeriesGroup, rel_path, scan_dicom_folder


def _check_slices(headers: list[tuple[Path, pydicom.Dataset]]) -> None:
    """Equal sizes and orientations (a group is one series and roughly one plane)."""
    ref_path, ref = headers[0]
    ref_size = (int(ref.get("Rows", 0)), int(ref.get("Columns", 0)))
    ref_iop = np.asarray(ref.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    for path, ds in headers:
        size = (int(ds.Rows), int(ds.Columns))
        if size != ref_size:
            raise ImageReadError(
                path, f"mixed slice sizes in series: {size} here, {ref_size} in {ref_path.name}"
            )
        iop = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
        if np.abs(iop - ref_iop).max() > 1e-3:
            raise ImageReadError(path, f"slice orientation differs from {ref_path.name}")


def _sort(folder: Path, headers: list[tuple[Path, pydicom.Dataset]]) -> tuple[list, float]:
    """Slices in order along the normal, and the slice spacing from their positions."""
    if len(headers) == 1:
        ds = headers[0][1]
        return headers, float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 1))
    if any("ImagePositionPatient" not in ds for _, ds in headers):
        raise ImageReadError(folder, "slices lack ImagePositionPatient: cannot order them")
    normal = geometry(headers[0][1])[2]
    pos = np.array([float(np.dot(geometry(ds)[3], normal)) for _, ds in headers])
    order = np.argsort(pos, kind="stable")
    headers = [headers[i] for i in order]
    pos = pos[order]
    steps = np.diff(pos)
    names = [p.name for p, _ in headers]
    if steps.min() < 1e-3:
        i = int(np.argmin(steps))
        raise ImageReadError(
            folder, f"two slices at the same position: {names[i]} and {names[i + 1]}"
        )
    step = float(np.median(steps))
    if steps.max() - steps.min() > 0.1 * step:
        i = int(np.argmax(steps))
        if steps[i] > 1.5 * steps.min():
            missing = int(round(steps[i] / steps.min())) - 1
            raise ImageReadError(
                folder,
                f"missing slice(s): a gap of {steps[i]:.3g} mm between {names[i]} and "
                f"{names[i + 1]} where slices are {steps.min():.3g} mm apart "
                f"(about {missing} slice(s) missing)",
            )
        raise ImageReadError(
            folder, f"irregular slice spacing: {steps.min():.3g} to {steps.max():.3g} mm"
        )
    return headers, float(pos[-1] - pos[0]) / (len(pos) - 1)


def _stack(slices: list[np.ndarray]) -> np.ndarray:
    if all(s.dtype == slices[0].dtype for s in slices):
        return np.stack(slices)
    return np.stack([s.astype(np.float32) for s in slices])


def _read_group(folder: Path, group: SeriesGroup, modality: str | None) -> ImageData:
    """Validate, order, decode and rescale one group; its problems name ``folder``."""
    if group.problem is not None:
        raise group.problem
    first_path, first = group.headers[0]
    if group.alone or (group.n_files == 1 and first.get("Modality") not in VOLUME_MODALITIES):
        return read_dicom_file(first_path, modality)
    _check_slices(group.headers)
    headers, dz = _sort(folder, group.headers)
    slices = []
    for path, _ in headers:
        ds = read_header(path)
        slices.append(rescale(path, ds, decode(path, ds)))
    first = headers[0][1]
    meta: dict[str, Any] = base_meta(folder, first)
    meta.update(
        n_slices=len(slices),
        files=[rel_path(folder, p) for p, _ in headers],
        slice_spacing=dz,
        header_window=(header_window(first) or (None,))[0],
    )
    dicom_mod = meta["dicom_modality"].upper()
    return volume_image(
        _stack(slices), first, dz, modality or MODALITY_MAP.get(dicom_mod, "ct"), meta
    )


def _problem(folder: Path, err: ImageReadError) -> str:
    """An error's problem, prefixed with its file (relative to ``folder``) if any."""
    return (
        err.problem if err.path == str(folder) else f"{rel_path(folder, err.path)}: {err.problem}"
    )


def _in_series(folder: Path, group: SeriesGroup, err: ImageReadError) -> ImageReadError:
    """The error of one group of a several-series folder, naming the folder and series."""
    return ImageReadError(
        folder, f"series {group.index} {group.label!r} ({group.uid}): {_problem(folder, err)}"
    )


def _with_series(image: ImageData, scan: FolderScan, chosen: SeriesGroup, problems: dict) -> None:
    others = []
    for group in scan.groups:
        if group is not chosen:
            info = group.summary(scan.folder)
            if group.index in problems:
                info["problem"] = problems[group.index]
            others.append(info)
    image.meta.update(
        series=chosen.summary(scan.folder), other_series=others, skipped_files=scan.skipped[:50]
    )


def _header_problem(folder: Path, group: SeriesGroup) -> ImageReadError | None:
    """Why a group fails the header checks (no pixels read), or None when it passes."""
    if group.problem is not None:
        return group.problem
    try:
        if not group.alone and group.n_files > 1:
            _check_slices(group.headers)
            _sort(folder, group.headers)
    except ImageReadError as err:
        return err
    return None


def _plans(folder: Path, group: SeriesGroup) -> bool:
    """Whether a group passes the header checks (no pixels read)."""
    return _header_problem(folder, group) is None


def list_dicom_series(folder: str | Path) -> list[dict[str, Any]]:
    """The series under ``folder`` from their headers only (no pixels decoded).

    In the main-series order: item ``k`` is the one ``series=k`` reads. Each is the
    ``meta['series']`` dict (``index``, ``uid``, ``number``, ``description``,
    ``label``, ``modality``, ``n_slices``, ``volume``, ``folder``) plus ``problem``
    (why the header checks fail, or None) and ``main`` (true for the one read by
    default, as far as headers tell: the first that passes the checks). Raises
    :class:`ImageReadError` when the folder holds no DICOM image.
    """
    folder = Path(folder)
    scan = scan_dicom_folder(folder)
    listing = []
    for group in scan.groups:
        info = group.summary(folder)
        err = _header_problem(folder, group)
        info["problem"] = None if err is None else _problem(folder, err)
        listing.append(info)
    main = next((s for s in listing if s["problem"] is None), listing[0])
    for info in listing:
        info["main"] = info is main
    return listing


def _read_main(scan: FolderScan, modality: str | None) -> ImageData:
    """The first group in rank order that reads; a tie between readable groups is refused."""
    folder, problems = scan.folder, {}
    for group in scan.groups:
        later = scan.groups[group.index + 1 :]
        rivals = [g for g in later if g.rank() == group.rank() and _plans(folder, g)]
        if rivals and _plans(folder, group):
            names = ", ".join(f"{g.index}: {g.label!r} {g.uid}" for g in [group, *rivals])
            raise ImageReadError(
                folder,
                f"holds {1 + len(rivals)} different series that tie for the main one "
                f"({group.n_files} slice(s), same SeriesNumber): {names}; "
                "choose one with series=<SeriesInstanceUID or index>",
            )
        try:
            image = _read_group(folder, group, modality)
        except ImageReadError as err:
            problems[group.index] = err
            continue
        _with_series(image, scan, group, {i: _problem(folder, e) for i, e in problems.items()})
        return image
    listed = "; ".join(_in_series(folder, scan.groups[i], e).problem for i, e in problems.items())
    raise ImageReadError(folder, f"none of its {len(scan.groups)} series reads: {listed}")


def read_dicom_series(
    folder: str | Path, modality: str | None = None, series: str | int | None = None
) -> ImageData:
    """Read the DICOM series under ``folder`` as a (Z, Y, X) volume (HU for CT).

    With several series (or planes) the main one is read: the one with the most
    slices that reads without error, ties broken by the lowest SeriesNumber.
    ``series`` (a SeriesInstanceUID, or the ``index`` listed in ``meta['series']`` /
    ``meta['other_series']``) chooses another. ``meta['series']`` describes the one
    read, ``meta['other_series']`` the rest, ``meta['skipped_files']`` what was left out.
    """
    folder = Path(folder)
    scan = scan_dicom_folder(folder)
    if series is None and len(scan.groups) > 1:
        return _read_main(scan, modality)
    group = scan.groups[0] if series is None else scan.find(series)
    try:
        image = _read_group(folder, group, modality)
    except ImageReadError as err:
        raise (err if len(scan.groups) == 1 else _in_series(folder, group, err)) from None
    _with_series(image, scan, group, {})
    return image


def read_dicom_folder(
    folder: str | Path, modality: str | None = None
) -> tuple[list[ImageData], list[ImageReadError]]:
    """Every series under ``folder`` that reads (main one first), and why the others do not.

    Raises the :class:`ImageReadError` of a folder's only series, or one listing every
    series' problem when none of several reads.
    """
    folder = Path(folder)
    scan = scan_dicom_folder(folder)
    read, problems = [], {}
    for group in scan.groups:
        try:
            read.append((group, _read_group(folder, group, modality)))
        except ImageReadError as err:
            if len(scan.groups) == 1:
                raise
            problems[group.index] = err
    errors = [_in_series(folder, scan.groups[i], e) for i, e in problems.items()]
    if not read:
        listed = "; ".join(e.problem for e in errors)
        raise ImageReadError(folder, f"none of its {len(scan.groups)} series reads: {listed}")
    notes = {i: _problem(folder, e) for i, e in problems.items()}
    for group, image in read:
        _with_series(image, scan, group, notes)
    return [image for _, image in read], errors
