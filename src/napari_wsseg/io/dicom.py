"""Single DICOM files: CT / MR slices, 2D mammograms and radiographs, colour images.

Pixels are decoded by pydicom (compressed transfer syntaxes through the pylibjpeg
plugins); a decoder failure names the transfer syntax and the package to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom import uid as dcm_uid
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut

from .base import ImageData, ImageReadError
from .detect import sniff
from .nifti import to_lps_zyx
from .windows import CT_WINDOW, default_window

# DICOM Modality tag -> our task modality.
MODALITY_MAP = {"MG": "mammo", "CR": "xray", "DX": "xray", "CT": "ct", "MR": "ct", "SM": "slide"}
VOLUME_MODALITIES = ("CT", "MR", "PT")


def _decoder_packages(ts: Any) -> list[tuple[str, str]]:
    """(PyPI package, import name) of the decoders able to read transfer syntax ``ts``."""
    gdcm = ("python-gdcm", "gdcm")
    if ts in dcm_uid.JPEG2000TransferSyntaxes:
        return [("pylibjpeg-openjpeg", "openjpeg"), gdcm]
    if ts in dcm_uid.JPEGLSTransferSyntaxes or ts in dcm_uid.JPEGTransferSyntaxes:
        return [("pylibjpeg-libjpeg", "libjpeg"), gdcm]
    if ts in dcm_uid.RLETransferSyntaxes:
        return [("pylibjpeg-rle", "rle"), gdcm]
    return [gdcm]


def _install_hint(ts: Any) -> str:
    packages = _decoder_packages(ts)
    missing = [pkg for pkg, mod in packages if importlib.util.find_spec(mod) is None]
    installed = [pkg for pkg, _ in packages if pkg not in missing]
    if installed and missing:
        return f"the installed decoder ({', '.join(installed)}) failed; install {missing[0]}"
    if missing:
        return f"install {' or '.join(missing)}"
    return f"the installed decoders ({', '.join(installed)}) failed on this file"


def read_header(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """Parse a DICOM file; ImageReadError if it is not DICOM or the header is cut short."""
    if sniff(path) != "dicom":
        raise ImageReadError(path, "not a DICOM file (no 'DICM' marker at byte 128)")
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as exc:
        raise ImageReadError(path, f"DICOM header is truncated or corrupt ({exc})") from exc


def decode(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    """Decoded stored pixel values, or an ImageReadError saying why not."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(path, "no pixel data (file truncated, or not an image object)")
    ts = ds.file_meta.get("TransferSyntaxUID", dcm_uid.ImplicitVRLittleEndian)
    try:
        return ds.pixel_array
    except Exception as exc:  # decoders raise RuntimeError / ValueError / ImportError
        if ts.is_compressed:
            raise ImageReadError(
                path,
                f"cannot decode pixel data compressed as {ts.name} ({ts}): "
                f"{_install_hint(ts)}. Decoder said: {exc}",
            ) from exc
        raise ImageReadError(path, f"pixel data is truncated or corrupt ({exc})") from exc


def rescale(path: Path, ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """Modality LUT (RescaleSlope/Intercept -> HU): int16 when exact, else float32."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(stored, ds))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1 and intercept == 0:
        return stored
    out = stored.astype(np.float64) * slope + intercept
    if slope.is_integer() and intercept.is_integer() and out.size:
        if -32768 <= out.min() and out.max() <= 32767:
            return out.astype(np.int16)
    return out.astype(np.float32)


def stored_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The representable range of stored values (for MONOCHROME1 inversion)."""
    bits = int(ds.get("BitsStored", 16) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0):
        return (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return (0.0, 2.0**bits - 1)


def header_window(ds: pydicom.Dataset) -> tuple[tuple[float, float], str] | None:
    """Contrast limits from the VOI LUT or WindowCenter/Width (first value), if any."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        n, first = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor[:2])
        n = n or 65536
        return (float(first), float(first + n - 1)), "voi_lut"
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is None or width is None:
        return None
    c = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
    w = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
    return (c - w / 2.0, c + w / 2.0), "header"


def invert_monochrome1(ds: pydicom.Dataset, values: np.ndarray) -> tuple[np.ndarray, float]:
    """MONOCHROME1 (high = dark) -> MONOCHROME2; returns the array and lo + hi used."""
    lo, hi = stored_range(ds)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    total = (lo + hi) * slope + 2 * intercept
    out = total - values.astype(np.float64)
    if np.issubdtype(values.dtype, np.integer):
        info = np.iinfo(values.dtype)
        if info.min <= out.min() and out.max() <= info.max:
            return out.astype(values.dtype), total
    return out.astype(np.float32), total


def geometry(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction, slice normal and position (LPS, mm)."""
    iop = np.asarray(ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    row, col = iop[:3], iop[3:]
    ipp = np.asarray(ds.get("ImagePositionPatient", [0, 0, 0]), dtype=float)
    return row, col, np.cross(row, col), ipp


def pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm from PixelSpacing or ImagerPixelSpacing."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and len(value) == 2 and float(value[0]) > 0:
            return float(value[0]), float(value[1])
    return None


def volume_image(
    native: np.ndarray, ds: pydicom.Dataset, dz: float, modality: str, meta: dict[str, Any]
) -> ImageData:
    """Wrap a (slice, row, column) stack as an LPS (Z, Y, X) volume with its RAS affine."""
    row, col, normal, ipp = geometry(ds)
    dy, dx = pixel_spacing(ds) or (1.0, 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dx, col * dy, normal * dz, ipp
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS (NIfTI convention)
    zyx, xform, new_affine = to_lps_zyx(native.transpose(2, 1, 0), affine)
    spacing = tuple(float(v) for v in np.linalg.norm(new_affine[:3, :3], axis=0))[::-1]
    ox, oy, oz = (float(v) for v in new_affine[:3, 3])
    meta.update(
        spacing=spacing,
        orientation="LPS",
        axes="zyx",
        affine=affine.tolist(),
        nifti_ornt=xform.tolist(),
        source_shape=list(native.shape[::-1]),
        shape=list(zyx.shape),
    )
    dicom_mod = str(meta.get("dicom_modality", "")).upper()
    if dicom_mod == "CT" or (modality == "ct" and dicom_mod not in ("MR", "PT")):
        limits = CT_WINDOW  # the model's HU window, whatever the header suggests
    else:
        limits = meta.get("header_window") or default_window("", zyx)
    return ImageData(
        data=zyx,
        modality=modality,
        scale=spacing,
        translate=(oz, -oy, -ox),
        contrast_limits=limits,
        meta=meta,
    )


def base_meta(path: Path, ds: pydicom.Dataset) -> dict[str, Any]:
    ts = ds.file_meta.get("TransferSyntaxUID")
    return {
        "format": "dicom",
        "source_path": str(path),
        "dicom_modality": str(ds.get("Modality", "")),
        "transfer_syntax": ts.name if ts is not None else "",
        "photometric": str(ds.get("PhotometricInterpretation", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
    }


def read_dicom_file(path: str | Path, modality: str | None = None) -> ImageData:
    """Read one DICOM file (a CT slice, a mammogram, a radiograph or a colour image)."""
    path = Path(path)
    ds = read_header(path)
    stored = decode(path, ds)
    meta = base_meta(path, ds)
    dicom_mod = meta["dicom_modality"].upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if meta["photometric"] == "PALETTE COLOR":
        colour = np.asarray(apply_color_lut(stored, ds))
        stored = (colour >> 8).astype(np.uint8) if colour.dtype.itemsize > 1 else colour
        ds.SamplesPerPixel = 3
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        if frames > 1:
            raise ImageReadError(path, f"multi-frame colour DICOM ({frames} frames) not supported")
        modality = modality or ("slide" if dicom_mod == "SM" else "skin")
        dy, dx = pixel_spacing(ds) or (1.0, 1.0)
        meta.update(spacing=(dy, dx), spacing_known=pixel_spacing(ds) is not None)
        return ImageData(stored, modality, (dy, dx), rgb=True, meta=meta)
    values = rescale(path, ds, stored)
    window = header_window(ds)
    inverted = meta["photometric"] == "MONOCHROME1"
    if inverted:
        values, total = invert_monochrome1(ds, values)
        if window is not None:
            (lo, hi), src = window
            window = (total - hi, total - lo), src
    meta["inverted"] = inverted
    meta["window_source"] = window[1] if window else "default"
    meta["header_window"] = window[0] if window else None
    if frames > 1 or dicom_mod in VOLUME_MODALITIES:
        native = values if frames > 1 else values[None]
        dz = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)
        return volume_image(native, ds, dz, modality or MODALITY_MAP.get(dicom_mod, "ct"), meta)
    modality = modality or MODALITY_MAP.get(dicom_mod, "xray")
    spacing = pixel_spacing(ds)
    meta.update(
        spacing=spacing or (1.0, 1.0),
        spacing_known=spacing is not None,
        laterality=str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or ""),
        view=str(ds.get("ViewPosition", "") or ""),
    )
    limits = window[0] if window else default_window(modality, values)
    return ImageData(values, modality, spacing or (1.0, 1.0), contrast_limits=limits, meta=meta)
