"""Subgroup labels of the evaluation: Lung-RADS size bands at their cut-offs."""

from __future__ import annotations

import pytest

from training.detection.evaluate import nodule_size_band

pytestmark = pytest.mark.torch  # training.detection imports MONAI


@pytest.mark.parametrize(
    ("diameter", "band"),
    [
        (3.0, "<6mm"),
        (5.99, "<6mm"),
        (6.0, "6-8mm"),
        (7.9, "6-8mm"),
        (8.0, "8-15mm"),
        (14.9, "8-15mm"),
        (15.0, ">=15mm"),
        (30.0, ">=15mm"),
    ],
)
def test_size_band_follows_lung_rads_solid_cut_offs(diameter: float, band: str) -> None:
    assert nodule_size_band(diameter) == band
