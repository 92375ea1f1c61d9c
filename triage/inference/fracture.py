"""Fracture task: radiograph -> network input, and boxes -> :class:`FractureFinding` (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from triage.core.errors import UnsupportedStudy
from triage.core.findings import Box2D, FractureFinding
from triage.imaging.radiograph import Radiograph
from triage.inference.detection import Detections
from triage.inference.spec import PreprocessSpec

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PreparedImage:
    """Network input ``(i, j)`` = (column, row) in 0..1, and the scale back to source pixels."""

    image: F32
    source_px_per_input_px: tuple[float, float]  # (columns, rows)


def normalise(array: F32, low_pct: float, high_pct: float) -> F32:
    """Map the image's own percentiles to 0..1 and clip (radiograph values have no unit).

    >>> normalise(np.arange(101, dtype=np.float32), 0, 100)[[0, 50, 100]].tolist()
    [0.0, 0.5, 1.0]
    """
    lo, hi = np.percentile(array, [low_pct, high_pct])
    if hi <= lo:
        return np.zeros_like(array, dtype=np.float32)
    scaled: F32 = np.clip((array - lo) / (hi - lo), 0, 1).astype(np.float32)
    return scaled


LOCAL_FLOOR = 0.01
"""Smallest local standard deviation divided by (in 0..1 units): flat background stays flat."""

LOCAL_SPAN = 3.0
"""Local standard deviations mapped to each half of 0..1 (+-3 SD covers the range)."""


def _gaussian(array: F32, sigma_mm: float, spacing_rc_mm: tuple[float, float]) -> F32:
    """Gaussian-smooth a (rows, cols) image with a sigma in mm (SimpleITK recursive filter)."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((spacing_rc_mm[1], spacing_rc_mm[0]))
    smoothed: F32 = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma_mm))
    return smoothed


def local_contrast(
    image: F32, sigma_mm: float, spacing_mm: tuple[float, float], weight: float
) -> F32:
    """Blend a 0..1 image with its local contrast normalisation (Gaussian mean and SD, SimpleITK).

    The local term is ``(x - mean) / max(sd, LOCAL_FLOOR)`` over a Gaussian neighbourhood of
    ``sigma_mm``, mapped so that +-``LOCAL_SPAN`` SD spans 0..1; the result is
    ``(1 - weight) * x + weight * local``. Serving and training call this same function, so the
    network sees identical input in both.

    >>> flat = np.full((32, 32), 0.3, np.float32)
    >>> round(float(local_contrast(flat, 2.0, (0.4, 0.4), 0.5)[16, 16]), 4)
    0.4
    """
    deviation = image - _gaussian(image, sigma_mm, spacing_mm)
    variance = np.maximum(_gaussian(deviation * deviation, sigma_mm, spacing_mm), 0)
    sd = np.maximum(np.sqrt(variance), LOCAL_FLOOR)
    local = np.clip(0.5 + deviation / (2 * LOCAL_SPAN * sd), 0, 1)
    blended: F32 = ((1 - weight) * image + weight * local).astype(np.float32)
    return blended


def resize_to_spacing(
    array: F32, spacing_rc_mm: tuple[float, float], target_mm: tuple[float, float]
) -> F32:
    """Resample a (rows, cols) image to the target pixel size (SimpleITK, linear, antialiased)."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((spacing_rc_mm[1], spacing_rc_mm[0]))
    shrink = (target_mm[1] / spacing_rc_mm[1], target_mm[0] / spacing_rc_mm[0])
    if max(shrink) > 1.5:  # smooth before decimating, like an antialiasing filter
        image = sitk.SmoothingRecursiveGaussian(
            image, [0.5 * t for t in (target_mm[1], target_mm[0])]
        )
    size = [
        max(int(round(s * sp / t)), 1)
        for s, sp, t in zip(
            image.GetSize(), image.GetSpacing(), (target_mm[1], target_mm[0]), strict=True
        )
    ]
    out = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        (0.0, 0.0),
        (target_mm[1], target_mm[0]),
        (1.0, 0.0, 0.0, 1.0),
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out).astype(np.float32)


def preprocess(radiograph: Radiograph, prep: PreprocessSpec) -> PreparedImage:
    """Resample to the card's pixel size and normalise; refuses images without a usable pixel size.

    Raises:
        UnsupportedStudy: no usable pixel spacing — fracture size and shape depend on it, and
            guessing would silently change what the model sees.
    """
    if radiograph.pixel_spacing_mm is None:
        raise UnsupportedStudy(
            "radiograph must have a usable pixel spacing for fracture triage, "
            f"got {radiograph.spacing_source}"
        )
    target = (prep.target_spacing_mm[1], prep.target_spacing_mm[0])  # (row, col) mm
    resized = resize_to_spacing(radiograph.array, radiograph.pixel_spacing_mm, target)
    image = normalise(resized, prep.intensity.low, prep.intensity.high)
    if prep.intensity.local_sigma_mm is not None:
        image = local_contrast(
            image, prep.intensity.local_sigma_mm, target, prep.intensity.local_weight
        )
    rows, cols = radiograph.array.shape
    return PreparedImage(
        image=np.ascontiguousarray(image.T),
        source_px_per_input_px=(cols / image.shape[1], rows / image.shape[0]),
    )


def to_findings(
    detections: Detections,
    prepared: PreparedImage,
    radiograph: Radiograph,
    *,
    min_score: float = 0.0,
) -> list[FractureFinding]:
    """Map boxes in network pixels back to source pixels (and mm when the spacing is known)."""
    sx, sy = prepared.source_px_per_input_px
    out = []
    for box, score in zip(detections.boxes, detections.scores, strict=True):
        if float(score) < min_score:
            continue
        # network pixel centres sit at integers; SCOORD puts the first pixel's corner at 0 (+0.5)
        c0, r0 = float(box[0]) * sx + 0.5, float(box[1]) * sy + 0.5
        c1, r1 = float(box[2]) * sx + 0.5, float(box[3]) * sy + 0.5
        spacing = radiograph.pixel_spacing_mm
        out.append(
            FractureFinding(
                box_px=Box2D(min_col_row=(c0, r0), max_col_row=(c1, r1)),
                score=float(score),
                sop_instance_uid=radiograph.sop_instance_uid,
                series_uid=radiograph.series_uid,
                width_mm=None if spacing is None else (c1 - c0) * spacing[1],
                height_mm=None if spacing is None else (r1 - r0) * spacing[0],
            )
        )
    return out
