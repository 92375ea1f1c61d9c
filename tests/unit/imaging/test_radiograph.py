"""The Radiograph value: shape, dtype and an honest spacing (or an explicit reason for none)."""

from __future__ import annotations

import numpy as np
import pytest

from triage.imaging.radiograph import Radiograph, size_mm


def make(
    array: np.ndarray | None = None,
    spacing: tuple[float, float] | None = (0.2, 0.1),
    source: str = "PixelSpacing",
) -> Radiograph:
    pixels = np.zeros((30, 20), np.float32) if array is None else array
    return Radiograph(pixels, spacing, source, "1.2.3.1", "1.2.3", "1.2")


def test_extent_is_rows_times_row_spacing_and_columns_times_column_spacing() -> None:
    radiograph = make()
    assert radiograph.shape_rc == (30, 20)
    assert radiograph.extent_mm == pytest.approx((6.0, 2.0))


def test_sizes_in_mm_are_none_without_spacing() -> None:
    radiograph = make(spacing=None, source="none: PixelSpacing is 0\\0")
    assert radiograph.extent_mm is None
    assert size_mm(radiograph, (10.0, 10.0)) is None
    assert size_mm(make(), (10.0, 10.0)) == pytest.approx((2.0, 1.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"array": np.zeros((2, 3, 4), np.float32)}, r"must be 2-D \(rows, columns\), got shape"),
        ({"array": np.zeros((3, 4), np.uint16)}, "must be float32, got uint16"),
        ({"spacing": None, "source": "PixelSpacing"}, "must be 'none: <why>'"),
        ({"spacing": (0.1, 0.1), "source": "none: absent"}, "must name the spacing's origin"),
        ({"spacing": (0.0, 0.1)}, r"two finite values > 0, got \(0\.0, 0\.1\)"),
        ({"source": "guess"}, "must start with one of"),
    ],
    ids=["3-d", "integer", "none-without-reason", "reason-with-spacing", "zero", "unknown-source"],
)
def test_invalid_radiographs_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)  # type: ignore[arg-type]


def test_radiograph_is_immutable() -> None:
    radiograph = make()
    with pytest.raises(AttributeError, match="cannot assign"):
        radiograph.spacing_source = "ImagerPixelSpacing"  # type: ignore[misc]
