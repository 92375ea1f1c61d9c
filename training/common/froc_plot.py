"""Draw a FROC curve as a PNG with Pillow (no matplotlib): log-scaled FP/scan, LUNA16 rate ticks.

The x axis runs from 1/8 to 8 false positives per scan on a log2 scale with a tick at each LUNA16
rate; the y axis is sensitivity 0..1. The curve is drawn through the given points (clipped to the
axis range, interpolated at its ends), the sensitivity at each LUNA16 rate is marked, and the CPM
is in the title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from training.common.froc import LUNA16_FP_RATES

CURVE_RGB = (31, 119, 180)
MARKER_RGB = (214, 39, 40)
_GRID_RGB = (220, 220, 220)
_INK_RGB = (0, 0, 0)
_RATE_LABELS = ("1/8", "1/4", "1/2", "1", "2", "4", "8")


@dataclass(frozen=True, slots=True)
class PlotArea:
    """Pixel box of the axes: x is log2(FP/scan) from ``log2(x_min)`` to ``log2(x_max)``."""

    left_px: int
    top_px: int
    right_px: int
    bottom_px: int
    x_min: float = LUNA16_FP_RATES[0]
    x_max: float = LUNA16_FP_RATES[-1]

    def to_px(self, fps_per_scan: float, sensitivity: float) -> tuple[float, float]:
        """Return the (column, row) pixel of a curve point.

        >>> PlotArea(0, 0, 60, 100).to_px(1.0, 0.25)
        (30.0, 75.0)
        """
        lo, hi = math.log2(self.x_min), math.log2(self.x_max)
        u = (math.log2(fps_per_scan) - lo) / (hi - lo)
        col = self.left_px + u * (self.right_px - self.left_px)
        row = self.bottom_px - sensitivity * (self.bottom_px - self.top_px)
        return (col, row)


def plot_area(size: tuple[int, int]) -> PlotArea:
    """Return the axes box used for an image of ``size`` (width, height) pixels."""
    width, height = size
    return PlotArea(left_px=72, top_px=44, right_px=width - 24, bottom_px=height - 64)


def clip_curve(
    fps_per_scan: Sequence[float], sensitivity: Sequence[float], *, x_min: float, x_max: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return the curve sorted by FP/scan inside ``[x_min, x_max]``, interpolated at both ends.

    >>> clip_curve([0.0, 1.0, 16.0], [0.1, 0.5, 0.9], x_min=0.5, x_max=8.0)[1].round(3).tolist()
    [0.3, 0.5, 0.687]
    """
    fps = np.asarray(fps_per_scan, dtype=np.float64)
    sens = np.asarray(sensitivity, dtype=np.float64)
    if fps.shape != sens.shape or fps.size == 0:
        raise ValueError(
            f"FROC points must be two equal non-empty sequences, got {fps.shape} and {sens.shape}"
        )
    order = np.argsort(fps, kind="stable")
    fps, sens = fps[order], sens[order]
    inside = (fps > x_min) & (fps < x_max)
    xs = np.concatenate([[x_min], fps[inside], [x_max]])
    ys = np.concatenate(
        [[np.interp(x_min, fps, sens)], sens[inside], [np.interp(x_max, fps, sens)]]
    )
    return xs, ys


def draw_froc(
    fps_per_scan: Sequence[float],
    sensitivity: Sequence[float],
    *,
    cpm: float,
    title: str = "FROC",
    size: tuple[int, int] = (720, 520),
) -> Image.Image:
    """Return an RGB image of the FROC curve with LUNA16 rate markers and the CPM in the title."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    area = plot_area(size)
    font = ImageFont.load_default(size=14)
    _axes(image, draw, area, font)
    xs, ys = clip_curve(fps_per_scan, sensitivity, x_min=area.x_min, x_max=area.x_max)
    draw.line([area.to_px(x, y) for x, y in zip(xs, ys, strict=True)], fill=CURVE_RGB, width=3)
    for rate in LUNA16_FP_RATES:
        col, row = area.to_px(rate, float(np.interp(rate, xs, ys)))
        draw.ellipse((col - 4, row - 4, col + 4, row + 4), outline=MARKER_RGB, width=2)
    draw.text((size[0] / 2, 20), f"{title}  (CPM {cpm:.3f})", fill=_INK_RGB, font=font, anchor="mm")
    return image


def write_froc_png(
    path: Path,
    fps_per_scan: Sequence[float],
    sensitivity: Sequence[float],
    *,
    cpm: float,
    title: str = "FROC",
) -> Path:
    """Draw the FROC curve and save it as a PNG at ``path`` (parent folders are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_froc(fps_per_scan, sensitivity, cpm=cpm, title=title).save(path, format="PNG")
    return path


def _axes(
    image: Image.Image,
    draw: ImageDraw.ImageDraw,
    area: PlotArea,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """Draw the grid, both axes, their ticks and labels."""
    for rate, label in zip(LUNA16_FP_RATES, _RATE_LABELS, strict=True):
        col, _ = area.to_px(rate, 0.0)
        draw.line([(col, area.top_px), (col, area.bottom_px)], fill=_GRID_RGB)
        draw.text((col, area.bottom_px + 8), label, fill=_INK_RGB, font=font, anchor="mt")
    for tenth in range(0, 11, 2):
        _, row = area.to_px(1.0, tenth / 10)
        draw.line([(area.left_px, row), (area.right_px, row)], fill=_GRID_RGB)
        draw.text(
            (area.left_px - 8, row), f"{tenth / 10:.1f}", fill=_INK_RGB, font=font, anchor="rm"
        )
    draw.rectangle((area.left_px, area.top_px, area.right_px, area.bottom_px), outline=_INK_RGB)
    middle = (area.left_px + area.right_px) / 2
    draw.text(
        (middle, area.bottom_px + 36),
        "false positives per scan (log scale)",
        fill=_INK_RGB,
        font=font,
        anchor="mt",
    )
    y_label = Image.new("RGB", (120, 20), "white")
    ImageDraw.Draw(y_label).text((60, 10), "sensitivity", fill=_INK_RGB, font=font, anchor="mm")
    rotated = y_label.rotate(90, expand=True)
    image.paste(rotated, (8, (area.top_px + area.bottom_px) // 2 - rotated.height // 2))
