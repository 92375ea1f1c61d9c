"""Planar geometry for synthetic radiographs: the image frame and bone centre-line paths.

Anatomy is laid out on a plane in millimetres (x to the viewer's right, y down, as displayed). A
:class:`Frame` then decides where the detector sits on that plane (pixel size, rotation, mirror,
which point lands in the image centre), so one anatomy can be imaged at any position, angle and
scale. Bones are described along a centre-line path with local coordinates ``u`` (arc length from
the path start) and ``v`` (signed distance across it); that lets one radial profile draw straight
long bones and curved ribs alike, and lets a fracture be written in the bone's own frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Window = tuple[slice, slice]  # (rows, cols)


@dataclass(frozen=True)
class Frame:
    """Places a detector of ``shape_rc`` pixels on the anatomy plane."""

    shape_rc: tuple[int, int]
    spacing_mm: float
    rotation_rad: float
    center_mm: tuple[float, float]
    mirror: bool = False

    def to_px(self, xy_mm: npt.ArrayLike) -> F64:
        """Return (n, 2) pixel (column, row) positions of (n, 2) anatomy points (mm)."""
        p = np.atleast_2d(np.asarray(xy_mm, dtype=np.float64)) - np.asarray(self.center_mm)
        c, s = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        px = c * p[:, 0] + s * p[:, 1]
        py = -s * p[:, 0] + c * p[:, 1]
        if self.mirror:
            px = -px
        rows, cols = self.shape_rc
        return np.stack(
            [px / self.spacing_mm + (cols - 1) / 2.0, py / self.spacing_mm + (rows - 1) / 2.0],
            axis=1,
        )

    def coords(self, window: Window) -> tuple[F32, F32]:
        """Return the anatomy-plane (x, y) millimetres of every pixel centre in ``window``."""
        rows, cols = self.shape_rc
        r = (np.arange(window[0].start, window[0].stop) - (rows - 1) / 2.0) * self.spacing_mm
        c = (np.arange(window[1].start, window[1].stop) - (cols - 1) / 2.0) * self.spacing_mm
        if self.mirror:
            c = -c
        cs, sn = math.cos(self.rotation_rad), math.sin(self.rotation_rad)
        r2, c2 = r[:, None], c[None, :]
        x = cs * c2 - sn * r2 + self.center_mm[0]
        y = sn * c2 + cs * r2 + self.center_mm[1]
        return x.astype(np.float32), y.astype(np.float32)

    def window(self, xy_mm: npt.ArrayLike, *, pad_mm: float = 0.0) -> Window | None:
        """Return the pixel window covering the points plus ``pad_mm``; None when off the image."""
        px = self.to_px(xy_mm)
        pad = pad_mm / self.spacing_mm
        rows, cols = self.shape_rc
        c0 = max(math.floor(px[:, 0].min() - pad), 0)
        c1 = min(math.ceil(px[:, 0].max() + pad) + 1, cols)
        r0 = max(math.floor(px[:, 1].min() - pad), 0)
        r1 = min(math.ceil(px[:, 1].max() + pad) + 1, rows)
        if c0 >= c1 or r0 >= r1:
            return None
        return (slice(r0, r1), slice(c0, c1))

    def full(self) -> Window:
        """Return the window of the whole image."""
        return (slice(0, self.shape_rc[0]), slice(0, self.shape_rc[1]))

    def coarse(self, factor: int) -> Frame:
        """Return a frame covering the same area with ``factor`` times larger pixels."""
        rows, cols = self.shape_rc
        return Frame(
            (math.ceil(rows / factor), math.ceil(cols / factor)),
            self.spacing_mm * factor,
            self.rotation_rad,
            self.center_mm,
            self.mirror,
        )


class Path(Protocol):
    """A bone centre line with local (u along, v across) coordinates in millimetres."""

    @property
    def length_mm(self) -> float:
        """Return the arc length of the path."""
        ...

    def local(self, x: F32, y: F32) -> tuple[F32, F32]:
        """Return (u, v) of anatomy-plane points."""
        ...

    def world(self, u: F64, v: F64) -> F64:
        """Return (n, 2) anatomy-plane points of local coordinates."""
        ...


@dataclass(frozen=True)
class StraightPath:
    """A straight (maybe bowed) centre line from ``start_mm`` at ``angle_rad`` to the x axis."""

    start_mm: tuple[float, float]
    angle_rad: float
    length: float
    bow_mm: float = 0.0

    @property
    def length_mm(self) -> float:
        """Return the path length."""
        return self.length

    def _bow(self, u: npt.NDArray[np.floating]) -> F64:
        return np.asarray(
            self.bow_mm * np.sin(np.pi * np.clip(u / self.length, 0.0, 1.0)), np.float64
        )

    def local(self, x: F32, y: F32) -> tuple[F32, F32]:
        """Return (u, v); v is measured from the bowed centre line."""
        d0, d1 = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dx, dy = x - np.float32(self.start_mm[0]), y - np.float32(self.start_mm[1])
        u = dx * np.float32(d0) + dy * np.float32(d1)
        v = -dx * np.float32(d1) + dy * np.float32(d0)
        if self.bow_mm:
            v = v - self._bow(u).astype(np.float32)
        return u.astype(np.float32), v.astype(np.float32)

    def world(self, u: F64, v: F64) -> F64:
        """Return anatomy points for local coordinates."""
        d0, d1 = math.cos(self.angle_rad), math.sin(self.angle_rad)
        vv = np.asarray(v, dtype=np.float64) + self._bow(np.asarray(u, dtype=np.float64))
        x = self.start_mm[0] + u * d0 - vv * d1
        y = self.start_mm[1] + u * d1 + vv * d0
        return np.stack([np.ravel(x), np.ravel(y)], axis=1)


@dataclass(frozen=True)
class ArcPath:
    """An elliptical arc ``c + (a cos t, b sin t)`` for t from ``theta0_rad`` to ``theta1_rad``.

    ``v`` is the first-order signed distance to the ellipse (positive outside), good near the curve,
    which is the only place a bone profile needs it.
    """

    center_mm: tuple[float, float]
    a_mm: float
    b_mm: float
    theta0_rad: float
    theta1_rad: float

    @cached_property
    def _table(self) -> tuple[F64, F64]:
        span = abs(self.theta1_rad - self.theta0_rad)
        t = np.linspace(0.0, span, 257)
        th = self.theta0_rad + np.sign(self.theta1_rad - self.theta0_rad) * t
        speed = np.hypot(self.a_mm * np.sin(th), self.b_mm * np.cos(th))
        s = np.concatenate([[0.0], np.cumsum((speed[1:] + speed[:-1]) / 2 * np.diff(t))])
        return t, s

    @property
    def length_mm(self) -> float:
        """Return the arc length."""
        return float(self._table[1][-1])

    def local(self, x: F32, y: F32) -> tuple[F32, F32]:
        """Return (u, v): arc length (extrapolated past the ends) and signed distance."""
        xp = (x - np.float32(self.center_mm[0])) / np.float32(self.a_mm)
        yp = (y - np.float32(self.center_mm[1])) / np.float32(self.b_mm)
        rho = np.sqrt(xp * xp + yp * yp) + np.float32(1e-6)
        grad = np.sqrt((xp / self.a_mm) ** 2 + (yp / self.b_mm) ** 2) / rho
        v = (rho - 1.0) / np.maximum(grad, np.float32(1e-6))
        sign = 1.0 if self.theta1_rad >= self.theta0_rad else -1.0
        t_tab, s_tab = self._table
        span = float(t_tab[-1])
        t = np.mod((np.arctan2(yp, xp) - self.theta0_rad) * sign, 2 * np.pi)
        t = np.where(t > np.pi + span / 2, t - 2 * np.pi, t)
        tc = np.clip(t, 0.0, span)
        speed = (s_tab[-1] / span) if span > 0 else 1.0
        u = np.interp(tc, t_tab, s_tab) + (t - tc) * speed
        return u.astype(np.float32), v.astype(np.float32)

    def world(self, u: F64, v: F64) -> F64:
        """Return anatomy points of local coordinates (u clamped to the arc); inverts ``local``.

        ``local`` gives v = (rho - 1) / |grad rho| where |grad rho| depends on the angle only, so
        the point is on the same normalised ray at rho = 1 + v |grad rho|.
        """
        t_tab, s_tab = self._table
        sign = 1.0 if self.theta1_rad >= self.theta0_rad else -1.0
        th = self.theta0_rad + sign * np.interp(np.ravel(u), s_tab, t_tab)
        grad = np.hypot(np.cos(th) / self.a_mm, np.sin(th) / self.b_mm)
        rho = 1.0 + np.ravel(np.asarray(v, dtype=np.float64)) * grad
        return np.stack(
            [
                self.center_mm[0] + self.a_mm * rho * np.cos(th),
                self.center_mm[1] + self.b_mm * rho * np.sin(th),
            ],
            axis=1,
        )


def as_f32(values: npt.ArrayLike) -> F32:
    """Return ``values`` as float32 (also pins the type that numpy's stubs lose in arithmetic)."""
    return np.asarray(values, dtype=np.float32)


def smoothstep(x: npt.NDArray[np.floating]) -> F32:
    """Return a cubic 0..1 step for x in 0..1 (clipped outside), used for soft edges."""
    t = np.clip(x, 0.0, 1.0)
    return as_f32(t * t * (3.0 - 2.0 * t))


def segment_distance(x: F32, y: F32, a: tuple[float, float], b: tuple[float, float]) -> F32:
    """Return the distance (mm) of anatomy points to the segment a-b."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    dd = dx * dx + dy * dy or 1e-9
    t = np.clip(((x - a[0]) * dx + (y - a[1]) * dy) / dd, 0.0, 1.0)
    return as_f32(np.hypot(x - a[0] - t * dx, y - a[1] - t * dy))
