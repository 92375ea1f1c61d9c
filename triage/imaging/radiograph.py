"""The one 2-D projection image type: a radiograph and how far apart its pixels are.

``array`` is indexed ``[row, column]`` and is oriented so that *brighter means denser* (bone bright,
air dark) whatever the source's photometric interpretation was: a MONOCHROME1 image has already been
inverted. Pixel spacing is optional on purpose: many real radiographs carry no usable spacing
(absent, or ``0\\0``), and a finding measured in millimetres on such an image would be invented.
``spacing_source`` says where the spacing came from, or why there is none, so a report can state it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SPACING_SOURCES = ("PixelSpacing", "ImagerPixelSpacing", "none")


@dataclass(frozen=True)
class Radiograph:
    """A single-frame CR/DX image with its identity and optional pixel spacing.

    Attributes:
        array: pixel values as float32, shape ``(rows, columns)``; larger values are denser.
        pixel_spacing_mm: ``(row spacing, column spacing)`` in millimetres, i.e. the distance
            between adjacent rows and between adjacent columns (DICOM PixelSpacing order);
            ``None`` when the header gives no usable spacing.
        spacing_source: ``"PixelSpacing"``, ``"ImagerPixelSpacing..."`` (with a note on
            magnification) or ``"none: <why>"``.
        sop_instance_uid: the source image's SOP Instance UID.
        series_uid: the source series' UID (may be a derived surrogate when the header had none).
        study_uid: the source study's UID (idem).
    """

    array: npt.NDArray[np.float32]  # (row, column); brighter = denser
    pixel_spacing_mm: tuple[float, float] | None  # (row spacing, column spacing)
    spacing_source: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str

    def __post_init__(self) -> None:
        if self.array.ndim != 2:
            raise ValueError(
                f"Radiograph.array must be 2-D (rows, columns), got shape {self.array.shape}"
            )
        if self.array.dtype != np.float32:
            raise ValueError(f"Radiograph.array must be float32, got {self.array.dtype}")
        if not self.spacing_source.startswith(SPACING_SOURCES):
            raise ValueError(
                f"spacing_source must start with one of {SPACING_SOURCES}, "
                f"got {self.spacing_source!r}"
            )
        if self.pixel_spacing_mm is None:
            if not self.spacing_source.startswith("none"):
                raise ValueError(
                    f"spacing_source must be 'none: <why>' when pixel_spacing_mm is None, "
                    f"got {self.spacing_source!r}"
                )
            return
        if self.spacing_source.startswith("none"):
            raise ValueError(
                f"spacing_source must name the spacing's origin, got {self.spacing_source!r}"
            )
        if len(self.pixel_spacing_mm) != 2 or not all(
            math.isfinite(v) and v > 0 for v in self.pixel_spacing_mm
        ):
            raise ValueError(
                f"pixel_spacing_mm must be two finite values > 0, got {self.pixel_spacing_mm!r}"
            )

    @property
    def shape_rc(self) -> tuple[int, int]:
        """Return ``(rows, columns)``."""
        rows, cols = self.array.shape
        return (int(rows), int(cols))

    @property
    def extent_mm(self) -> tuple[float, float] | None:
        """Return the image height and width in millimetres, or ``None`` without a spacing."""
        if self.pixel_spacing_mm is None:
            return None
        rows, cols = self.shape_rc
        return (rows * self.pixel_spacing_mm[0], cols * self.pixel_spacing_mm[1])


def size_mm(radiograph: Radiograph, extent_px: tuple[float, float]) -> tuple[float, float] | None:
    """Convert a ``(height, width)`` extent in pixels to millimetres, or ``None`` without spacing.

    Returns ``None`` rather than guessing when the image has no usable spacing, so a caller
    cannot report a made-up size.

    >>> r = Radiograph(np.zeros((4, 4), np.float32), (0.2, 0.1), "PixelSpacing", "1", "2", "3")
    >>> size_mm(r, (10.0, 10.0))
    (2.0, 1.0)
    """
    if radiograph.pixel_spacing_mm is None:
        return None
    return (
        extent_px[0] * radiograph.pixel_spacing_mm[0],
        extent_px[1] * radiograph.pixel_spacing_mm[1],
    )
