"""What a radiograph phantom is made of before it is imaged: soft tissue, bones and small extras.

A :class:`Scene` is anatomy on the plane, independent of the detector. Soft tissue is smooth, so it
is rendered on a coarse grid and upsampled; bones and extras (vertebrae, ECG electrodes) are
rendered at full resolution in their own windows, which keeps a 2500-pixel image to about a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from triage.synth.dr_bone import Bone
from triage.synth.dr_geometry import (
    F32,
    F64,
    Frame,
    StraightPath,
    as_f32,
    segment_distance,
    smoothstep,
)

MU_SOFT_PER_MM = 0.02  # water-like soft tissue at a typical radiographic energy


@dataclass(frozen=True)
class Overlay:
    """A small full-resolution object: ``render(x, y)`` gives its attenuation near ``points_mm``."""

    points_mm: F64
    pad_mm: float
    render: Callable[[F32, F32], F32]


@dataclass(frozen=True)
class Scene:
    """Anatomy on the plane (mm, x right, y down as displayed).

    Attributes:
        body_part: DICOM BodyPartExamined ("CHEST", "TIBIA", ...).
        render_soft: attenuation of soft tissue and air spaces on a (coarse) frame.
        bones: bones, each possibly fractured later.
        extras: other full-resolution objects.
        extent_mm: (x0, y0, x1, y1) of the region worth imaging.
        laterality: "L" | "R" for limbs, "U" for unpaired parts.
        view_position: "PA" | "AP".
        fracture_visible: whether a fracture centred at an anatomy point (mm) would be seen; None
            means everywhere. Keeps ground truth off sites no reader could call (a rib seen
            through the abdomen or the heart), which would only teach label noise.
    """

    body_part: str
    render_soft: Callable[[Frame], F32]
    bones: tuple[Bone, ...]
    extras: tuple[Overlay, ...]
    extent_mm: tuple[float, float, float, float]
    laterality: str
    view_position: str
    fracture_visible: Callable[[float, float], bool] | None = None


@dataclass(frozen=True)
class SoftTube:
    """A soft-tissue tube (limb, finger, cast) with a half-width that varies along it."""

    path: StraightPath
    knots_u_mm: tuple[float, ...]
    radii_mm: tuple[float, ...]
    depth_ratio: float = 1.0
    mu_per_mm: float = MU_SOFT_PER_MM


def render_tubes(frame: Frame, tubes: tuple[SoftTube, ...], *, combine: str = "max") -> F32:
    """Return the attenuation of soft-tissue tubes; overlapping tubes take the thicker one."""
    out = np.zeros(frame.shape_rc, dtype=np.float32)
    for tube in tubes:
        r_max = max(tube.radii_mm)
        u = np.linspace(0.0, tube.path.length_mm, 8)
        pts = np.vstack([tube.path.world(u, np.full(8, s * r_max)) for s in (-1.0, 1.0)])
        win = frame.window(pts, pad_mm=2.0)
        if win is None:
            continue
        x, y = frame.coords(win)
        uu, vv = tube.path.local(x, y)
        smooth = PchipInterpolator(tube.knots_u_mm, tube.radii_mm)
        ends = np.clip(np.minimum(uu, tube.path.length_mm - uu) / 10.0, 0.0, 1.0)
        radius = (smooth(np.clip(uu, 0.0, tube.path.length_mm)) * np.sqrt(ends)).astype(np.float32)
        att = (
            tube.mu_per_mm
            * 2
            * tube.depth_ratio
            * np.sqrt(np.clip(radius * radius - vv * vv, 0, None))
        )
        if combine == "max":
            np.maximum(out[win], att, out=out[win])
        else:
            out[win] += att
    return out


def upsample_to(coarse: F32, shape_rc: tuple[int, int], factor: int) -> F32:
    """Return a coarse image upsampled ``factor`` times to ``shape_rc`` (bilinear, area-aligned).

    Coarse pixel k covers fine pixels ``k*factor .. k*factor+factor-1``; edges are clamped. Written
    as one strided blend per phase, several times faster than ``ndimage.zoom`` on the 5-megapixel
    images made here, which every image goes through a few times.
    """
    out = coarse.astype(np.float32, copy=False)
    for axis, n_out in enumerate(shape_rc):
        out = _upsample_axis(out, factor, n_out, axis)
    return np.ascontiguousarray(out)


def _upsample_axis(a: F32, factor: int, n_out: int, axis: int) -> F32:
    n_in = max(a.shape[axis], math.ceil(n_out / factor))
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1 + n_in - a.shape[axis])
    padded = np.pad(a, pad, mode="edge")
    shape = list(a.shape)
    shape[axis] = n_in * factor
    out = np.empty(shape, dtype=np.float32)

    def along(sl: slice) -> tuple[slice, ...]:
        return (sl, slice(None)) if axis == 0 else (slice(None), sl)

    for phase in range(factor):
        t = (phase + 0.5) / factor - 0.5
        lo, w = (0, 1.0 + t) if t < 0 else (1, t)
        first = padded[along(slice(lo, lo + n_in))]
        second = padded[along(slice(lo + 1, lo + 1 + n_in))]
        out[along(slice(phase, None, factor))] = first * np.float32(1 - w) + second * np.float32(w)
    return out[along(slice(0, n_out))]


def ellipsoid_bone(
    center_mm: tuple[float, float],
    *,
    half_len_mm: float,
    half_width_mm: float,
    angle_rad: float,
    density: float,
    name: str = "",
) -> Bone:
    """Return a small round bone (carpal, talus, patella) as a tube that is all end cap."""
    d = (math.cos(angle_rad), math.sin(angle_rad))
    start = (center_mm[0] - d[0] * half_len_mm, center_mm[1] - d[1] * half_len_mm)
    return Bone(
        StraightPath(start, angle_rad, 2 * half_len_mm),
        radius_mm=half_width_mm,
        cortex_mm=min(1.0, half_width_mm * 0.3),
        cap_mm=(half_len_mm, half_len_mm),
        density=density,
        name=name,
    )


def rounded_rect(
    center_mm: tuple[float, float],
    half_mm: tuple[float, float],
    *,
    corner_mm: float,
    fill: float,
    rim: float,
) -> Overlay:
    """Return a vertebral-body-like overlay: a filled rounded rectangle with a denser rim."""
    cx, cy = center_mm
    hx, hy = half_mm

    def render(x: F32, y: F32) -> F32:
        qx = np.abs(x - cx) - (hx - corner_mm)
        qy = np.abs(y - cy) - (hy - corner_mm)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        sd = outside + np.minimum(np.maximum(qx, qy), 0) - corner_mm
        inside = smoothstep(0.5 - sd / 1.0)
        return as_f32(fill * inside + rim * np.exp(-((sd / 0.9) ** 2)))

    pts = np.array([[cx - hx, cy - hy], [cx + hx, cy + hy]])
    return Overlay(pts, 3.0, render)


def ring(
    center_mm: tuple[float, float],
    radius_mm: float,
    *,
    width_mm: float,
    value: float,
    fill: float = 0.0,
) -> Overlay:
    """Return a ring (pedicle, ECG electrode) overlay with an optional filled centre."""
    cx, cy = center_mm

    def render(x: F32, y: F32) -> F32:
        d = np.hypot(x - cx, y - cy)
        inner = fill * smoothstep((radius_mm - d) / 0.5)
        return as_f32(value * np.exp(-(((d - radius_mm) / width_mm) ** 2)) + inner)

    pts = np.array([[cx - radius_mm, cy - radius_mm], [cx + radius_mm, cy + radius_mm]])
    return Overlay(pts, 2 * width_mm + 1.0, render)


def wire(points_mm: F64, *, radius_mm: float, value: float) -> Overlay:
    """Return a thin dense polyline (ECG lead, cast edge) overlay."""

    def render(x: F32, y: F32) -> F32:
        d = np.full(x.shape, np.inf, dtype=np.float32)
        for a, b in zip(points_mm[:-1], points_mm[1:], strict=True):
            np.minimum(d, segment_distance(x, y, (a[0], a[1]), (b[0], b[1])), out=d)
        return as_f32(value * 2 * np.sqrt(np.clip(radius_mm**2 - d * d, 0, None)))

    return Overlay(points_mm, radius_mm + 1.0, render)


DOWN = math.pi / 2  # direction of +y on the anatomy plane: proximal to distal
Range = float | tuple[float, float]
LimbPart = tuple[list[Bone], list[SoftTube], float]  # bones, soft tissue, length of anatomy (mm)


def draw(rng: np.random.Generator, value: Range) -> float:
    """Return ``value``, or a uniform draw when it is a (low, high) range."""
    return float(rng.uniform(*value)) if isinstance(value, tuple) else float(value)


def long_bone(
    rng: np.random.Generator,
    name: str,
    *,
    start: tuple[float, float],
    length: float,
    radius: Range,
    cortex: Range,
    flare: tuple[Range, Range] = (0.0, 0.0),
    cap: tuple[Range, Range] = (0.0, 0.0),
    angle: float = DOWN,
    bow: Range = 0.0,
    site: str | None = "long_bone",
) -> Bone:
    """Return a limb bone whose (low, high) parameters are drawn from ``rng``.

    Limb bones are imaged at 50-70 kVp where bone attenuates 2-3 times more, relative to soft
    tissue, than in a chest exposure, hence the higher density than ribs.
    """
    return Bone(
        StraightPath(start, angle, length, bow_mm=draw(rng, bow)),
        radius_mm=draw(rng, radius),
        cortex_mm=draw(rng, cortex),
        flare=(draw(rng, flare[0]), draw(rng, flare[1])),
        cap_mm=(draw(rng, cap[0]), draw(rng, cap[1])),
        depth_ratio=float(rng.uniform(0.85, 1.1)),
        density=float(rng.uniform(1.6, 2.8)),
        name=name,
        site=site,
    )


def soft_tube(
    start: tuple[float, float],
    length: float,
    radii: tuple[float, ...],
    *,
    angle: float = DOWN,
    depth: float = 1.0,
) -> SoftTube:
    """Return a soft-tissue tube with ``radii`` spread evenly from start to end."""
    knots = tuple(float(x) for x in np.linspace(0.0, length, len(radii)))
    return SoftTube(StraightPath(start, angle, length), knots, radii, depth)
