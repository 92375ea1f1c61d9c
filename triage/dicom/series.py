"""Turn a selected series into pixels with geometry: a CT :class:`Volume` or a :class:`Radiograph`.

Axis conventions. A CT volume's array is indexed ``[k, j, i]`` and its ``affine_lps`` maps the
column ``(i, j, k, 1)`` to patient LPS millimetres (DICOM's frame: +x Left, +y Posterior, +z
Superior). ``i`` runs along a row of the image, i.e. across columns, in the direction of the first
ImageOrientationPatient triplet (the row cosine), one step being PixelSpacing[1] (the *column*
spacing); ``j`` runs down the rows in the direction of the second triplet (the column cosine), one
step being PixelSpacing[0]; ``k`` runs along the slice normal ``row cosine x column cosine``, one
step being the measured distance between slice positions (never SliceThickness, which may overlap or
leave gaps). Slices are sorted by their ImagePositionPatient projected on that normal, ascending, so
``k`` always points along the normal whatever the file names or InstanceNumbers say, and the origin
is the ImagePositionPatient (the centre of the first transmitted pixel) of the first sorted slice. A
series whose slices do not form such a regular grid (gaps, duplicates, mixed orientation or matrix,
gantry tilt, uneven spacing) raises :class:`InvalidSeries` rather than being resampled silently.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset

from triage.core.errors import InvalidSeries
from triage.dicom.reader import SeriesInput, functional_group_value
from triage.imaging.volume import Volume, affine_from_geometry

_DUPLICATE_TOLERANCE_MM = 0.01  # two slices closer than this along the normal share a position
_TILT_TOLERANCE_DEG = 0.1  # stack direction vs slice normal
_SPACING_RTOL = 0.02  # steps may differ from the median by 2 % ...
_SPACING_ATOL_MM = 0.01  # ... or 0.01 mm, whichever is larger
_ORIENTATION_ATOL = 1e-3  # direction cosines (about 0.06 degrees): scanners jitter below this
_PIXEL_SPACING_ATOL_MM = 1e-4


@dataclass(frozen=True, slots=True)
class _Slice:
    """One 2-D frame of a series and the header facts that place it."""

    position_lps_mm: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, ...] | None
    rows_cols: tuple[int, int]
    slope: float
    intercept: float
    dataset: Dataset
    frame: int | None  # None: a single-frame instance


def load_ct_volume(
    series: SeriesInput, *, min_slices: int = 1, max_gap_factor: float = 1.5
) -> Volume:
    """Read a CT series into a volume in Hounsfield units with its LPS affine.

    Classic CT (one file per slice) and Enhanced / Legacy Converted Enhanced CT (multi-frame) are
    read; compressed transfer syntaxes decode through pydicom's plug-ins (JPEG, JPEG-LS,
    JPEG 2000, RLE).

    Args:
        series: the series to read, from :func:`triage.dicom.reader.scan_folder`.
        min_slices: fewest slices the caller accepts.
        max_gap_factor: a step between sorted slices larger than this times the median step is a
            gap (missing slices).

    Returns:
        A float32 HU volume ``[k, j, i]`` (``stored * RescaleSlope + RescaleIntercept``).

    Raises:
        ValueError: if ``min_slices < 1`` or ``max_gap_factor <= 1``.
        InvalidSeries: if the series is not CT, has too few slices, inconsistent Rows x Columns,
            mixed orientation, absent or zero PixelSpacing, duplicate positions, gantry tilt,
            missing slices, non-uniform spacing, or pixel data that cannot be decoded.
    """
    if min_slices < 1:
        raise ValueError(f"min_slices must be >= 1, got {min_slices}")
    if max_gap_factor <= 1.0:
        raise ValueError(f"max_gap_factor must be > 1, got {max_gap_factor}")
    if series.modality != "CT":
        raise InvalidSeries(
            f"series modality must be CT to build a CT volume, got {series.modality!r}"
        )
    slices = _read_slices(series.paths)
    if len(slices) < min_slices:
        raise InvalidSeries(
            f"series must have at least {min_slices} slices, got {len(slices)} (too few slices)"
        )
    rows, cols = _rows_cols(slices)
    row_cos, col_cos = _orientation(slices)
    spacing_rc = _pixel_spacing(slices)
    normal = np.cross(row_cos, col_cos)
    positions = _positions(slices)
    order = np.argsort(positions @ normal, kind="stable")
    slices = [slices[n] for n in order]
    positions = positions[order]
    along = positions @ normal
    _check_duplicates(along)
    _check_tilt(positions, normal)
    step_mm = _check_spacing(along, max_gap_factor=max_gap_factor) if len(along) > 1 else None
    affine = affine_from_geometry(
        (float(positions[0, 0]), float(positions[0, 1]), float(positions[0, 2])),
        np.column_stack([row_cos, col_cos, normal]),
        (spacing_rc[1], spacing_rc[0], step_mm or _single_slice_step_mm(slices[0].dataset)),
    )
    return Volume(array=_stack_hu(slices, rows=rows, cols=cols), affine_lps=affine)


def _read_slices(paths: Sequence[Path]) -> list[_Slice]:
    slices: list[_Slice] = []
    for index, path in enumerate(paths):
        try:
            ds = dcmread(path)
        except Exception as exc:  # noqa: BLE001 - any parser failure is an unreadable instance
            raise InvalidSeries(
                f"every instance must be readable, got {type(exc).__name__} on instance "
                f"{index + 1} of {len(paths)}"
            ) from exc
        n_frames = int(ds.get("NumberOfFrames") or 1)
        if "PerFrameFunctionalGroupsSequence" in ds:
            slices.extend(_slice_of(ds, frame) for frame in range(n_frames))
        elif n_frames > 1:
            raise InvalidSeries(
                "a multi-frame CT instance must carry per-frame functional groups, "
                f"got {n_frames} frames without them"
            )
        else:
            slices.append(_slice_of(ds, None))
    return slices


def _slice_of(ds: Dataset, frame: int | None) -> _Slice:
    def value(sequence: str, keyword: str) -> object | None:
        if frame is not None:
            items = ds.PerFrameFunctionalGroupsSequence[frame].get(sequence)
            if items and keyword in items[0]:
                own: object = items[0].get(keyword)
                return own
        return functional_group_value(ds, sequence, keyword)

    return _Slice(
        position_lps_mm=header_floats(value("PlanePositionSequence", "ImagePositionPatient"), 3),
        orientation=header_floats(value("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
        pixel_spacing_mm=header_floats(value("PixelMeasuresSequence", "PixelSpacing"), 2),
        rows_cols=(int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)),
        slope=header_float(value("PixelValueTransformationSequence", "RescaleSlope"), default=1.0),
        intercept=header_float(
            value("PixelValueTransformationSequence", "RescaleIntercept"), default=0.0
        ),
        dataset=ds,
        frame=frame,
    )


def header_floats(value: object, n: int) -> tuple[float, ...] | None:
    if value is None or isinstance(value, str | bytes):
        return None
    try:
        floats = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return floats if len(floats) == n and all(math.isfinite(f) for f in floats) else None


def header_float(value: object, *, default: float) -> float:
    try:
        return float(str(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _rows_cols(slices: Sequence[_Slice]) -> tuple[int, int]:
    counts = Counter(s.rows_cols for s in slices)
    if len(counts) > 1:
        seen = " and ".join(f"{r}x{c} on {n} slices" for (r, c), n in counts.most_common())
        raise InvalidSeries(
            f"Rows x Columns must be the same on every slice (inconsistent matrix size), got {seen}"
        )
    return next(iter(counts))


def _orientation(
    slices: Sequence[_Slice],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if any(s.orientation is None for s in slices):
        raise InvalidSeries("ImageOrientationPatient must be present on every slice, got it absent")
    cosines = np.array([s.orientation for s in slices], dtype=np.float64)
    common = Counter(tuple(np.round(c, 4)) for c in cosines).most_common(1)[0][0]
    reference = np.asarray(common, dtype=np.float64)
    differing = np.abs(cosines - reference).max(axis=1) > _ORIENTATION_ATOL
    if differing.any():
        dots = np.clip(
            np.concatenate(
                [cosines[differing, :3] @ reference[:3], cosines[differing, 3:] @ reference[3:]]
            ),
            -1.0,
            1.0,
        )
        raise InvalidSeries(
            "slices must share one ImageOrientationPatient (mixed orientation), got "
            f"{int(differing.sum())} of {len(slices)} slices turned up to "
            f"{np.degrees(np.arccos(dots.min())):.1f} degrees from the others"
        )
    row_cos, col_cos = reference[:3], reference[3:]
    if abs(np.linalg.norm(row_cos) - 1) > 1e-2 or abs(np.linalg.norm(col_cos) - 1) > 1e-2:
        raise InvalidSeries("ImageOrientationPatient must hold two unit vectors, got other lengths")
    if abs(float(row_cos @ col_cos)) > 1e-2:
        raise InvalidSeries("ImageOrientationPatient row and column cosines must be orthogonal")
    return row_cos / np.linalg.norm(row_cos), col_cos / np.linalg.norm(col_cos)


def _pixel_spacing(slices: Sequence[_Slice]) -> tuple[float, float]:
    first = slices[0].pixel_spacing_mm
    if first is None or min(first) <= 0:
        got = "absent" if first is None else "\\".join(f"{v:g}" for v in first)
        raise InvalidSeries(f"PixelSpacing must be present and > 0 mm, got {got}")
    for s in slices:
        other = s.pixel_spacing_mm
        if other is None or np.abs(np.subtract(other, first)).max() > _PIXEL_SPACING_ATOL_MM:
            raise InvalidSeries(
                f"PixelSpacing must be the same on every slice, got {first} and {other}"
            )
    return (first[0], first[1])


def _positions(slices: Sequence[_Slice]) -> npt.NDArray[np.float64]:
    missing = sum(s.position_lps_mm is None for s in slices)
    if missing:
        raise InvalidSeries(
            "ImagePositionPatient must be present on every slice, "
            f"got it absent on {missing} slices"
        )
    return np.array([s.position_lps_mm for s in slices], dtype=np.float64)


def _check_duplicates(along_mm: npt.NDArray[np.float64]) -> None:
    steps = np.diff(along_mm)
    same = np.flatnonzero(steps < _DUPLICATE_TOLERANCE_MM)
    if same.size:
        raise InvalidSeries(
            f"slice positions must be distinct (duplicate positions), got {same.size} repeated "
            f"position(s), the first at {along_mm[same[0]]:.2f} mm along the slice normal; remove "
            "the repeated instances or split the acquisitions"
        )


def _check_tilt(positions_lps_mm: npt.NDArray[np.float64], normal: npt.NDArray[np.float64]) -> None:
    if len(positions_lps_mm) < 2:
        return
    offsets = positions_lps_mm - positions_lps_mm[0]
    along = offsets @ normal
    across = np.linalg.norm(offsets - along[:, None] * normal[None, :], axis=1)
    angle_deg = float(np.degrees(np.arctan2(across[-1], abs(along[-1]))))
    if angle_deg > _TILT_TOLERANCE_DEG:
        raise InvalidSeries(
            f"slice positions must lie along the slice normal, got a stack {angle_deg:.1f} degrees "
            "off the normal (gantry tilt); a tilt-corrected reconstruction is needed"
        )


def _check_spacing(along_mm: npt.NDArray[np.float64], *, max_gap_factor: float) -> float:
    """Return the mean slice step in mm after checking for gaps and uneven steps."""
    steps = np.diff(along_mm)
    median_mm = float(np.median(steps))
    worst = int(np.argmax(steps))
    if steps[worst] > max_gap_factor * median_mm:
        n_missing = max(round(steps[worst] / median_mm) - 1, 1)
        raise InvalidSeries(
            f"slices must be contiguous (missing slices), got a {steps[worst]:.2f} mm gap between "
            f"sorted slices {worst + 1} and {worst + 2} (at {along_mm[worst]:.2f} -> "
            f"{along_mm[worst + 1]:.2f} mm along the normal), {steps[worst] / median_mm:.1f}x the "
            f"median step {median_mm:.2f} mm: about {n_missing} slice(s) missing"
        )
    tolerance_mm = max(_SPACING_RTOL * median_mm, _SPACING_ATOL_MM)
    if np.abs(steps - median_mm).max() > tolerance_mm:
        raise InvalidSeries(
            "slice spacing must be uniform (non-uniform spacing), got steps from "
            f"{steps.min():.2f} to {steps.max():.2f} mm around a median {median_mm:.2f} mm "
            f"(tolerance {tolerance_mm:.2f} mm)"
        )
    return float((along_mm[-1] - along_mm[0]) / (len(along_mm) - 1))


def _single_slice_step_mm(ds: Dataset) -> float:
    """Return a k step for a one-slice volume: SpacingBetweenSlices, else SliceThickness, else 1."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = header_float(
            functional_group_value(ds, "PixelMeasuresSequence", keyword), default=0.0
        )
        if value > 0:
            return value
    return 1.0


def _stack_hu(slices: Sequence[_Slice], *, rows: int, cols: int) -> npt.NDArray[np.float32]:
    out = np.empty((len(slices), rows, cols), dtype=np.float32)
    decoded: dict[int, npt.NDArray[np.generic]] = {}
    for k, s in enumerate(slices):
        key = id(s.dataset)
        if key not in decoded:
            decoded[key] = decode_pixels(s.dataset)
        pixels = (
            decoded[key] if s.frame is None or decoded[key].ndim == 2 else decoded[key][s.frame]
        )
        if pixels.shape != (rows, cols):
            raise InvalidSeries(f"pixel data must be {rows}x{cols} per slice, got {pixels.shape}")
        out[k] = pixels.astype(np.float32) * np.float32(s.slope) + np.float32(s.intercept)
    return out


def decode_pixels(ds: Dataset) -> npt.NDArray[np.generic]:
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InvalidSeries(
            f"pixel data must be greyscale (SamplesPerPixel 1), got {ds.SamplesPerPixel}"
        )
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoder errors come in many types; the message names the fix
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise InvalidSeries(
            f"pixel data must decode, got {type(exc).__name__} for {name}: {exc}"
        ) from exc
