"""Turn projected attenuation into a processed radiograph, with the artefacts of real detectors.

The chain follows a digital radiography system: transmitted intensity ``exp(-k A)`` with the anode
heel gradient and scatter, quantum (Poisson-like) and electronic noise, detector blur, then the
vendor processing (log, percentile windowing, unsharp-mask edge enhancement, a tone curve), and the
things that sit on top: collimator shutters, an anti-scatter grid's line pattern, a lead side
marker. Every step's strength is random, so no single generator's look is learnt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from triage.synth.dr_geometry import F32, as_f32, segment_distance
from triage.synth.dr_scene import upsample_to

BoolArray = npt.NDArray[np.bool_]

# Letter strokes on a unit box (x right, y down): lead markers "L", "R", "A", "P".
_LETTERS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "L": ((0, 0, 0, 1), (0, 1, 0.7, 1)),
    "R": (
        (0, 0, 0, 1),
        (0, 0, 0.6, 0),
        (0.6, 0, 0.7, 0.25),
        (0.7, 0.25, 0.6, 0.5),
        (0.6, 0.5, 0, 0.5),
        (0.3, 0.5, 0.75, 1),
    ),
    "A": ((0, 1, 0.35, 0), (0.35, 0, 0.7, 1), (0.15, 0.6, 0.55, 0.6)),
    "P": (
        (0, 0, 0, 1),
        (0, 0, 0.6, 0),
        (0.6, 0, 0.7, 0.25),
        (0.7, 0.25, 0.6, 0.5),
        (0.6, 0.5, 0, 0.5),
    ),
}


@dataclass(frozen=True)
class Field:
    """The collimated (exposed) field: a rotated rectangle in pixel coordinates."""

    center_cr: tuple[float, float]
    half_cr: tuple[float, float]
    angle_rad: float

    def mask(self, shape_rc: tuple[int, int], *, soft_px: float = 0.0, step: int = 1) -> F32:
        """Return 1 inside the field and 0 outside, with a ``soft_px`` penumbra.

        With ``step`` > 1 only every ``step``-th pixel (from 0) is evaluated.
        """
        rr = np.arange(0, shape_rc[0], step, dtype=np.float32)[:, None] - self.center_cr[1]
        cc = np.arange(0, shape_rc[1], step, dtype=np.float32)[None, :] - self.center_cr[0]
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        du = np.abs(c * cc + s * rr) - self.half_cr[0]
        dv = np.abs(-s * cc + c * rr) - self.half_cr[1]
        outside = np.maximum(du, dv)
        if soft_px <= 0:
            return as_f32(outside <= 0)
        return as_f32(np.clip(0.5 - outside / soft_px, 0.0, 1.0))

    def contains(self, col: float, row: float) -> bool:
        """Return True when the pixel (col, row) is inside the field."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dc, dr = col - self.center_cr[0], row - self.center_cr[1]
        return abs(c * dc + s * dr) <= self.half_cr[0] and abs(-s * dc + c * dr) <= self.half_cr[1]


def random_field(shape_rc: tuple[int, int], rng: np.random.Generator) -> Field:
    """Return a collimated field: none (whole detector) in 1/3 of images, else a random inset."""
    rows, cols = shape_rc
    if rng.random() < 0.35:
        return Field(((cols - 1) / 2, (rows - 1) / 2), (cols, rows), 0.0)
    insets = rng.uniform(0.0, 0.14, 4) * np.array([cols, cols, rows, rows])
    c0, c1, r0, r1 = insets[0], cols - insets[1], insets[2], rows - insets[3]
    return Field(
        ((c0 + c1) / 2, (r0 + r1) / 2), ((c1 - c0) / 2, (r1 - r0) / 2), rng.uniform(-0.05, 0.05)
    )


def _lowpass(image: F32, sigma_px: float) -> F32:
    """Return a wide Gaussian blur computed on a downsampled copy (cheap for large sigmas)."""
    factor = max(1, int(sigma_px // 4))
    if factor == 1:
        return as_f32(ndimage.gaussian_filter(image, sigma_px, mode="nearest"))
    rows, cols = image.shape
    small = image[: rows - rows % factor, : cols - cols % factor]
    small = small.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="nearest")
    return upsample_to(small, image.shape, factor)


def expose(attenuation: F32, rng: np.random.Generator, *, spacing_mm: float) -> F32:
    """Return the log-domain detector signal (bright = attenuating) with scatter, noise and blur."""
    rows, cols = attenuation.shape
    intensity = np.exp(-attenuation * np.float32(rng.uniform(0.8, 1.2)))
    axis_angle = rng.uniform(0, 2 * math.pi)
    ramp = (
        np.cos(axis_angle) * np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
        + np.sin(axis_angle) * np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    )
    intensity *= 1.0 + np.float32(rng.uniform(0.0, 0.15)) * ramp
    scatter_px = rng.uniform(15.0, 40.0) / spacing_mm
    intensity += np.float32(rng.uniform(0.05, 0.5)) * _lowpass(intensity, scatter_px)
    photons = np.float32(rng.uniform(1500.0, 20000.0))
    electronic = np.float32(rng.uniform(0.0003, 0.002) ** 2)
    sigma = np.sqrt(np.clip(intensity, 0, None) / photons + electronic)
    intensity += sigma * rng.standard_normal(intensity.shape, dtype=np.float32)
    intensity = ndimage.gaussian_filter(intensity, rng.uniform(0.4, 1.2))  # detector blur (MTF)
    return as_f32(-np.log(np.clip(intensity, 1e-4, None)))


def process(signal: F32, field: F32, rng: np.random.Generator, *, spacing_mm: float) -> F32:
    """Return the displayed image in 0..1: percentile window, edge enhancement and a tone curve.

    ``field`` is the exposed-field mask sampled every 4th pixel (``Field.mask(..., step=4)``).
    """
    if rng.random() < 0.85:  # dynamic range compression, as every vendor's processing does
        base = _lowpass(signal, rng.uniform(6.0, 30.0) / spacing_mm)
        level = np.float32(np.median(signal[::4, ::4][field > 0.5]))
        signal = signal - np.float32(rng.uniform(0.3, 0.85)) * (base - level)
    inside = signal[::4, ::4][field > 0.5]
    lo = np.percentile(inside, rng.uniform(0.2, 3.0))
    hi = np.percentile(inside, rng.uniform(99.0, 99.95))
    img = as_f32((signal - np.float32(lo)) / np.float32(max(float(hi - lo), 1e-3)))
    gain = rng.uniform(0.0, 1.2)
    if gain > 0.05:
        img = img + np.float32(gain) * (img - _lowpass(img, rng.uniform(2.0, 10.0) / spacing_mm))
    img = np.clip(img, 0.0, 1.0)
    if rng.random() < 0.5:
        img = img ** np.float32(rng.uniform(0.6, 1.6))
    else:
        slope = rng.uniform(3.0, 8.0)
        mid = rng.uniform(0.4, 0.6)
        lo_s, hi_s = 1 / (1 + math.exp(slope * mid)), 1 / (1 + math.exp(-slope * (1 - mid)))
        img = (1 / (1 + np.exp(-slope * (img - mid))) - lo_s) / (hi_s - lo_s)
    return as_f32(img)


def add_grid_lines(img: F32, rng: np.random.Generator) -> None:
    """Add an anti-scatter grid's (aliased) line pattern in place, in about a quarter of images."""
    if rng.random() > 0.25:
        return
    freq = rng.uniform(0.15, 0.48)
    amp = np.float32(rng.uniform(0.004, 0.02))
    if rng.random() < 0.5:
        img += amp * np.sin(2 * np.pi * freq * np.arange(img.shape[1], dtype=np.float32))[None, :]
    else:
        img += amp * np.sin(2 * np.pi * freq * np.arange(img.shape[0], dtype=np.float32))[:, None]


def add_marker(
    img: F32, field: Field, letter: str, rng: np.random.Generator, *, spacing_mm: float
) -> None:
    """Draw a bright lead letter marker near a corner of the exposed field, in place."""
    size_px = rng.uniform(8.0, 16.0) / spacing_mm
    hc, hr = min(field.half_cr[0], img.shape[1] / 2), min(field.half_cr[1], img.shape[0] / 2)
    corner = (rng.choice([-1, 1]), rng.choice([-1, 1]))
    cc = field.center_cr[0] + corner[0] * (hc - size_px * rng.uniform(1.2, 2.5))
    cr = field.center_cr[1] + corner[1] * (hr - size_px * rng.uniform(1.2, 2.5))
    c0, r0 = int(cc - size_px / 2), int(cr - size_px / 2)
    pad = int(size_px * 0.3)
    win = (
        slice(max(r0 - pad, 0), max(r0 + int(size_px) + pad, 0)),
        slice(max(c0 - pad, 0), max(c0 + int(size_px) + pad, 0)),
    )
    rr = np.arange(win[0].start, win[0].stop, dtype=np.float32)[:, None] - r0
    col = np.arange(win[1].start, win[1].stop, dtype=np.float32)[None, :] - c0
    if rr.size == 0 or col.size == 0:
        return
    x, y = (
        np.broadcast_to(col / size_px, (rr.size, col.size)),
        np.broadcast_to(rr / size_px, (rr.size, col.size)),
    )
    d = np.full(x.shape, np.inf, dtype=np.float32)
    for x0, y0, x1, y1 in _LETTERS.get(letter, _LETTERS["L"]):
        np.minimum(d, segment_distance(x, y, (x0, y0), (x1, y1)), out=d)
    stroke = np.clip((0.09 - d) * size_px / 1.5 + 0.5, 0.0, 1.0)
    level = np.float32(rng.uniform(0.85, 1.0))
    img[win] = img[win] * (1 - stroke) + level * stroke


def apply_shutter(img: F32, field: Field, rng: np.random.Generator) -> F32:
    """Return the image with the area outside the field unexposed (white) or blackened."""
    soft = rng.uniform(2.0, 8.0)
    if field.mask(img.shape, step=16).min() >= 1.0:
        return img
    mask = upsample_to(field.mask(img.shape, soft_px=soft, step=2), img.shape, 2)
    outside = (
        np.float32(rng.uniform(0.88, 1.0))
        if rng.random() < 0.8
        else np.float32(rng.uniform(0.0, 0.05))
    )
    tile = rng.standard_normal((128, 128), dtype=np.float32) * np.float32(0.01)
    reps = (img.shape[0] // 128 + 1, img.shape[1] // 128 + 1)
    grain = np.tile(tile, reps)[: img.shape[0], : img.shape[1]]
    return as_f32(img * mask + (outside + grain) * (1 - mask))
