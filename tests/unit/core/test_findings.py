"""Finding values and their measurements: ellipsoid volume, equivalent diameter, Lung-RADS size."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.findings import (
    Box2D,
    LungRadsSize,
    ellipsoid_volume_mm3,
    equivalent_diameter_mm,
    lung_rads_size_category,
)

extents_mm = st.floats(min_value=0.0, max_value=200.0, allow_nan=False)


def test_ellipsoid_volume_of_a_cube_box_is_the_inscribed_sphere() -> None:
    assert ellipsoid_volume_mm3((8.0, 8.0, 8.0)) == pytest.approx(math.pi / 6.0 * 8.0**3)


def test_ellipsoid_volume_uses_half_extents_as_semi_axes() -> None:
    assert ellipsoid_volume_mm3((2.0, 4.0, 6.0)) == pytest.approx(
        4.0 / 3.0 * math.pi * 1.0 * 2.0 * 3.0
    )


def test_ellipsoid_volume_of_a_flat_or_negative_box_is_zero() -> None:
    assert ellipsoid_volume_mm3((0.0, 5.0, 5.0)) == 0.0
    assert ellipsoid_volume_mm3((-3.0, 5.0, 5.0)) == 0.0


def test_equivalent_diameter_of_zero_volume_is_zero() -> None:
    assert equivalent_diameter_mm(0.0) == 0.0


@settings(deadline=None)
@given(d=st.floats(min_value=0.0, max_value=500.0, allow_nan=False))
def test_equivalent_diameter_round_trips_the_volume_of_a_sphere(d: float) -> None:
    volume = ellipsoid_volume_mm3((d, d, d))
    assert equivalent_diameter_mm(volume) == pytest.approx(d, rel=1e-9, abs=1e-9)


@settings(deadline=None)
@given(a=extents_mm, b=extents_mm, c=extents_mm)
def test_equivalent_diameter_of_an_ellipsoid_is_the_geometric_mean_of_its_extents(
    a: float, b: float, c: float
) -> None:
    expected = (a * b * c) ** (1.0 / 3.0)
    assert equivalent_diameter_mm(ellipsoid_volume_mm3((a, b, c))) == pytest.approx(
        expected, rel=1e-9, abs=1e-9
    )


@settings(deadline=None)
@given(v=st.floats(min_value=0.0, max_value=1e6), more=st.floats(min_value=0.0, max_value=1e6))
def test_equivalent_diameter_grows_with_volume(v: float, more: float) -> None:
    assert equivalent_diameter_mm(v + more) >= equivalent_diameter_mm(v)


def test_equivalent_diameter_rejects_a_negative_volume() -> None:
    with pytest.raises(ValueError, match=r"volume_mm3 must be >= 0, got -1\.0"):
        equivalent_diameter_mm(-1.0)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf])
def test_lung_rads_size_category_rejects_negative_or_non_finite_diameters(bad: float) -> None:
    with pytest.raises(ValueError, match="diameter_mm must be a finite non-negative number, got"):
        lung_rads_size_category(bad)


@pytest.mark.parametrize(
    ("diameter_mm", "category"),
    [
        (5.999, LungRadsSize.CAT2),
        (6.0, LungRadsSize.CAT3),
        (7.999, LungRadsSize.CAT3),
        (8.0, LungRadsSize.CAT4A),
        (14.999, LungRadsSize.CAT4A),
        (15.0, LungRadsSize.CAT4B),
    ],
)
def test_lung_rads_size_category_boundaries_are_inclusive_below(
    diameter_mm: float, category: LungRadsSize
) -> None:
    assert lung_rads_size_category(diameter_mm) == category


@settings(deadline=None)
@given(d=st.floats(0.0, 100.0), grow=st.floats(0.0, 50.0))
def test_lung_rads_size_category_never_drops_as_a_nodule_grows(d: float, grow: float) -> None:
    order = list(LungRadsSize)
    small = order.index(lung_rads_size_category(d))
    assert order.index(lung_rads_size_category(d + grow)) >= small


def test_box2d_centre_is_the_midpoint_of_its_corners() -> None:
    box = Box2D(min_col_row=(10.0, 20.0), max_col_row=(30.0, 60.0))
    assert box.center_col_row == (20.0, 40.0)
