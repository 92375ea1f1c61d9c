"""The FROC PNG drawn with Pillow: right size and mode, curve where the axes say it should be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.common.froc_plot import (
    CURVE_RGB,
    MARKER_RGB,
    clip_curve,
    plot_area,
    write_froc_png,
)

pytestmark = pytest.mark.torch  # training.common.froc imports MONAI's FROC helpers


def _pixels(image: Image.Image, rgb: tuple[int, int, int]) -> np.ndarray:
    """Return (row, col) of every pixel of exactly this colour."""
    return np.argwhere(np.all(np.asarray(image) == np.array(rgb, dtype=np.uint8), axis=2))


def test_froc_png_has_the_size_mode_and_a_curve_at_the_expected_pixels(tmp_path: Path) -> None:
    # flat at 0.5 below 1 FP/scan, flat at 0.75 above: two horizontal runs of curve pixels
    path = write_froc_png(
        tmp_path / "plots" / "froc.png",
        [0.01, 0.125, 0.9, 1.1, 8.0, 30.0],
        [0.5, 0.5, 0.5, 0.75, 0.75, 0.75],
        cpm=0.607,
        title="hand-made",
    )
    image = Image.open(path)
    assert image.format == "PNG"
    assert image.size == (720, 520)
    assert image.mode == "RGB"
    area = plot_area(image.size)
    curve = _pixels(image, CURVE_RGB)
    assert len(curve) > 500
    _, row_half = area.to_px(0.5, 0.5)
    _, row_three_quarters = area.to_px(2.0, 0.75)
    left = curve[curve[:, 1] < area.to_px(0.5, 0)[0]]
    right = curve[curve[:, 1] > area.to_px(2.0, 0)[0]]
    assert np.abs(left[:, 0] - row_half).max() <= 3
    assert np.abs(right[:, 0] - row_three_quarters).max() <= 3
    # the curve spans the whole log axis, 1/8 .. 8 FP/scan, and stays inside the axes
    assert curve[:, 1].min() <= area.left_px + 3
    assert curve[:, 1].max() >= area.right_px - 3
    assert area.top_px <= curve[:, 0].min()
    assert curve[:, 0].max() <= area.bottom_px
    assert len(_pixels(image, MARKER_RGB)) > 7 * 10  # one ring per LUNA16 rate


def test_curve_is_clipped_to_the_axis_range_and_interpolated_at_its_ends() -> None:
    xs, ys = clip_curve([4.0, 0.0, 0.25, 16.0], [0.8, 0.0, 0.4, 1.0], x_min=0.125, x_max=8.0)
    assert xs.tolist() == [0.125, 0.25, 4.0, 8.0]
    np.testing.assert_allclose(ys, [0.2, 0.4, 0.8, 0.8 + 0.2 * 4 / 12])


def test_mismatched_points_are_refused() -> None:
    with pytest.raises(ValueError, match="two equal non-empty sequences"):
        clip_curve([0.1, 1.0], [0.5], x_min=0.125, x_max=8.0)
