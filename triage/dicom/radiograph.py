"""Radiographs (CR, DX for presentation or processing) -> :class:`Radiograph`.

The modality LUT is applied when present, MONOCHROME1 is inverted so bone is bright, and the pixel
size comes from PixelSpacing, else ImagerPixelSpacing (corrected by the estimated magnification when
given), else it is *absent with the reason*: the fracture task refuses the image, never guesses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut

from triage.core.errors import InvalidSeries
from triage.dicom.reader import SeriesInput
from triage.dicom.series import decode_pixels, header_float, header_floats
from triage.imaging.radiograph import Radiograph

_RADIOGRAPH_MODALITIES = ("CR", "DX")


def load_radiograph(
    source: str | os.PathLike[str] | Dataset, *, series: SeriesInput | None = None
) -> Radiograph:
    """Read one CR or DX image (for presentation or for processing) as a :class:`Radiograph`.

    The modality LUT (RescaleSlope / RescaleIntercept or a Modality LUT Sequence) is applied when
    present, and MONOCHROME1 images are inverted so that bone is bright.

    Args:
        source: a file path, or a dataset that still holds its pixel data.
        series: the series the image came from; its (possibly derived) UIDs are used when given.

    Raises:
        InvalidSeries: if the image is not CR/DX, is multi-frame or not greyscale, or its pixel data
            cannot be decoded.
    """
    ds = source if isinstance(source, Dataset) else _read_radiograph(Path(source))
    modality = str(ds.get("Modality", "")).upper()
    if modality not in _RADIOGRAPH_MODALITIES:
        raise InvalidSeries(f"modality must be CR or DX for a radiograph, got {modality!r}")
    if int(ds.get("NumberOfFrames") or 1) != 1:
        raise InvalidSeries(f"a radiograph must be single-frame, got {ds.NumberOfFrames} frames")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InvalidSeries(
            f"PhotometricInterpretation must be MONOCHROME1 or MONOCHROME2, got {photometric!r}"
        )
    values = np.asarray(apply_modality_lut(decode_pixels(ds), ds), dtype=np.float32)
    if photometric == "MONOCHROME1":
        values = _invert(values, ds)
    spacing_mm, spacing_source = radiograph_spacing_mm(ds)
    meta = getattr(ds, "file_meta", None)
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    if not sop_uid and meta is not None:
        sop_uid = str(meta.get("MediaStorageSOPInstanceUID", ""))
    return Radiograph(
        array=values,
        pixel_spacing_mm=spacing_mm,
        spacing_source=spacing_source,
        sop_instance_uid=sop_uid,
        series_uid=series.series_uid if series else str(ds.get("SeriesInstanceUID", "")),
        study_uid=series.study_uid if series else str(ds.get("StudyInstanceUID", "")),
    )


def _read_radiograph(path: Path) -> Dataset:
    try:
        return dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file cannot be used
        raise InvalidSeries(
            f"a radiograph must be a readable DICOM file, got {type(exc).__name__}"
        ) from exc


def _invert(values: npt.NDArray[np.float32], ds: Dataset) -> npt.NDArray[np.float32]:
    """Mirror values within the stored range mapped through the modality LUT (MONOCHROME1 -> 2)."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0):
        stored = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1])
    else:
        stored = np.array([0, 2**bits - 1])
    low, high = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    return np.asarray((low + high) - values, dtype=np.float32)


def radiograph_spacing_mm(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    """Return a radiograph's ``(row, column)`` pixel spacing in mm and where it came from.

    PixelSpacing (calibrated to the patient, when > 0) wins; else ImagerPixelSpacing, which is at
    the detector and overstates sizes by the geometric magnification unless
    EstimatedRadiographicMagnificationFactor is present, in which case it is divided out; else
    none, with the reason (e.g. ``"none: PixelSpacing is 0\\0; ImagerPixelSpacing absent"``).
    """
    pixel = _spacing_pair(ds, "PixelSpacing")
    imager = _spacing_pair(ds, "ImagerPixelSpacing")
    if pixel is not None and min(pixel) > 0:
        return (pixel[0], pixel[1]), "PixelSpacing"
    notes = [
        f"{name} absent" if value is None else f"{name} is " + "\\".join(f"{v:g}" for v in value)
        for name, value in (("PixelSpacing", pixel), ("ImagerPixelSpacing", imager))
    ]
    if imager is not None and min(imager) > 0:
        magnification = header_float(
            ds.get("EstimatedRadiographicMagnificationFactor"), default=0.0
        )
        ignored = "" if pixel is None else f"; {notes[0]}"
        if magnification > 0:
            corrected = (imager[0] / magnification, imager[1] / magnification)
            return corrected, (
                f"ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor {magnification:g} "
                f"(detector spacing corrected to the patient plane){ignored}"
            )
        return (imager[0], imager[1]), (
            "ImagerPixelSpacing (at the detector; not corrected for geometric magnification)"
            + ignored
        )
    return None, "none: " + "; ".join(notes)


def _spacing_pair(ds: Dataset, keyword: str) -> tuple[float, ...] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return header_floats(value, 2) or (float("nan"), float("nan"))
