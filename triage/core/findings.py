"""What a finding is: CT nodules and radiograph fractures, in named units and frames (H5-H8)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from triage.core.types import Float3


@dataclass(frozen=True, slots=True)
class Box3D:
    """An axis-aligned box in continuous voxel coordinates of the *source* volume, ``(i, j, k)``.

    Integer coordinates are voxel centres (the affine's convention, and MONAI's), so the corners map
    to patient space through the volume's affine directly, with no half-voxel shift.
    """

    min_ijk: tuple[float, float, float]  # low corner
    max_ijk: tuple[float, float, float]  # high corner


@dataclass(frozen=True, slots=True)
class Box2D:
    """An axis-aligned box on a 2-D image in DICOM SCOORD pixel coordinates, ``(column, row)``.

    As in SCOORD graphic data, (0, 0) is the top-left corner of the top-left pixel, so the centre of
    pixel (c, r) is (c + 0.5, r + 0.5).
    """

    min_col_row: tuple[float, float]  # top-left corner
    max_col_row: tuple[float, float]  # bottom-right corner

    @property
    def center_col_row(self) -> tuple[float, float]:
        """Return the centre of the box in (column, row) pixels."""
        return (
            (self.min_col_row[0] + self.max_col_row[0]) / 2.0,
            (self.min_col_row[1] + self.max_col_row[1]) / 2.0,
        )


class LungRadsSize(StrEnum):
    """Lung-RADS v2022 baseline size category for a *solid* nodule (texture is not classified)."""

    CAT2 = "2"
    CAT3 = "3"
    CAT4A = "4A"
    CAT4B = "4B"


@dataclass(frozen=True, slots=True)
class NoduleFinding:
    """A lung nodule candidate on a CT series."""

    center_lps_mm: Float3
    diameter_mm: float  # mean extent of the detection box in the axial plane
    volume_mm3: float  # ellipsoid inscribed in the detection box
    score: float  # model confidence, 0..1 (not a calibrated probability of malignancy)
    series_uid: str
    box_ijk: Box3D
    label: str = "nodule"

    @property
    def lung_rads_size(self) -> LungRadsSize:
        """Return the Lung-RADS size category, assuming a solid nodule."""
        return lung_rads_size_category(self.diameter_mm)


@dataclass(frozen=True, slots=True)
class FractureFinding:
    """A fracture candidate on one radiograph."""

    box_px: Box2D
    score: float
    sop_instance_uid: str
    series_uid: str
    width_mm: float | None  # None when the image has no usable pixel spacing
    height_mm: float | None
    label: str = "fracture"


Finding = NoduleFinding | FractureFinding


def lung_rads_size_category(diameter_mm: float) -> LungRadsSize:
    """Return the Lung-RADS v2022 baseline category of a solid nodule of this mean diameter.

    <6 mm -> 2, 6 to <8 mm -> 3, 8 to <15 mm -> 4A, >=15 mm -> 4B.

    >>> lung_rads_size_category(7.9).value, lung_rads_size_category(8.0).value
    ('3', '4A')
    """
    if not math.isfinite(diameter_mm) or diameter_mm < 0:
        raise ValueError(f"diameter_mm must be a finite non-negative number, got {diameter_mm!r}")
    if diameter_mm < 6.0:
        return LungRadsSize.CAT2
    if diameter_mm < 8.0:
        return LungRadsSize.CAT3
    if diameter_mm < 15.0:
        return LungRadsSize.CAT4A
    return LungRadsSize.CAT4B


def ellipsoid_volume_mm3(extent_mm: Float3) -> float:
    """Return the volume of the ellipsoid inscribed in a box of the given full extents.

    >>> round(ellipsoid_volume_mm3((8.0, 8.0, 8.0)), 1)
    268.1
    """
    a, b, c = (max(e, 0.0) / 2.0 for e in extent_mm)
    return 4.0 / 3.0 * math.pi * a * b * c


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """Return the diameter of a sphere with the given volume.

    >>> round(equivalent_diameter_mm(268.08), 1)
    8.0
    """
    if volume_mm3 < 0:
        raise ValueError(f"volume_mm3 must be >= 0, got {volume_mm3!r}")
    return float((6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0))
