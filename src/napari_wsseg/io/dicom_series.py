"""DICOM series: a folder of slices -> one (Z, Y, X) volume in HU.

Headers are read first (no pixels) to validate that the folder holds one series of
equal-sized, parallel slices at regular positions; slices are sorted by their
ImagePositionPatient projected on the slice normal, then decoded and rescaled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from .base import ImageData, ImageReadError
from .dicom import (
    MODALITY_MAP,
    base_meta,
    decode,
    geometry,
    header_window,
    read_header,
    rescale,
    volume_image,
)

_IGNORED = ("DICOMDIR", "Thumbs.db", "desktop.ini")


def _files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in _IGNORED
    )
    if not files:
        subdirs = [p.name for p in folder.iterdir() if p.is_dir()]
        hint = f" (it holds only sub-folders: {subdirs[:5]})" if subdirs else ""
        raise ImageReadError(folder, f"empty folder: no DICOM files to read{hint}")
    return files


def _one_series(folder: Path, headers: list[tuple[Path, pydicom.Dataset]]) -> None:
    uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(uids) > 1:
        raise ImageReadError(
            folder, f"holds {len(uids)} different series (SeriesInstanceUID); put one per folder"
        )
    ref_path, ref = headers[0]
    ref_size = (int(ref.get("Rows", 0)), int(ref.get("Columns", 0)))
    ref_iop = np.asarray(ref.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    for path, ds in headers:
        if "Rows" not in ds:
            raise ImageReadError(path, "DICOM file without an image (no Rows/Columns)")
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


def read_dicom_series(folder: str | Path, modality: str | None = None) -> ImageData:
    """Read a folder holding one DICOM series as a (Z, Y, X) volume (HU for CT)."""
    folder = Path(folder)
    headers = [(p, read_header(p, stop_before_pixels=True)) for p in _files(folder)]
    _one_series(folder, headers)
    headers, dz = _sort(folder, headers)
    slices = []
    for path, _ in headers:
        ds = read_header(path)
        slices.append(rescale(path, ds, decode(path, ds)))
    first = headers[0][1]
    meta: dict[str, Any] = base_meta(folder, first)
    meta.update(
        n_slices=len(slices),
        files=[p.name for p, _ in headers],
        slice_spacing=dz,
        header_window=(header_window(first) or (None,))[0],
    )
    dicom_mod = meta["dicom_modality"].upper()
    return volume_image(
        _stack(slices), first, dz, modality or MODALITY_MAP.get(dicom_mod, "ct"), meta
    )
