"""Rasterise soft-edged primitives onto a voxel grid (partial-volume approximation).

Every primitive returns an *occupancy* in 0..1 inside its bounding box; callers blend HU values with
it. Edges are a logistic ramp whose width follows the voxel size, so the same phantom rendered at
0.7 mm or at 2.5 mm shows the partial-volume blur a scanner would give. Coordinates are patient LPS
millimetres and the grid is described by per-axis voxel-centre coordinates (an axis-aligned grid:
the phantoms are axial).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Grid:
    """An axis-aligned grid: voxel-centre coordinates along x (i), y (j) and z (k), in LPS mm."""

    x_mm: npt.NDArray[np.float64]
    y_mm: npt.NDArray[np.float64]
    z_mm: npt.NDArray[np.float64]

    @property
    def shape_kji(self) -> tuple[int, int, int]:
        """Return the array shape (k, j, i)."""
        return (self.z_mm.size, self.y_mm.size, self.x_mm.size)

    @property
    def edge_mm(self) -> float:
        """Return the logistic edge width: half the mean voxel size."""
        steps = [
            abs(float(a[1] - a[0])) if a.size > 1 else 1.0
            for a in (self.x_mm, self.y_mm, self.z_mm)
        ]
        return 0.35 * float(np.mean(steps))

    def box_slices(
        self, lo_mm: npt.ArrayLike, hi_mm: npt.ArrayLike
    ) -> tuple[slice, slice, slice] | None:
        """Return (k, j, i) slices covering the LPS box, or None when it misses the grid."""
        lo = np.asarray(lo_mm, dtype=np.float64)
        hi = np.asarray(hi_mm, dtype=np.float64)
        out: list[slice] = []
        for axis, coords in zip((2, 1, 0), (self.z_mm, self.y_mm, self.x_mm), strict=True):
            idx = np.nonzero((coords >= lo[axis]) & (coords <= hi[axis]))[0]
            if idx.size == 0:
                return None
            out.append(slice(int(idx[0]), int(idx[-1]) + 1))
        return (out[0], out[1], out[2])

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[npt.NDArray[np.float64], ...]:
        """Return broadcastable z, y, x coordinate arrays for a sub-box."""
        z = self.z_mm[sl[0]][:, None, None]
        y = self.y_mm[sl[1]][None, :, None]
        x = self.x_mm[sl[2]][None, None, :]
        return z, y, x


def ramp(signed_inside_mm: npt.NDArray[np.float64], edge_mm: float) -> F32:
    """Return a soft step: 1 deep inside (positive distance), 0 outside."""
    return (1.0 / (1.0 + np.exp(-np.clip(signed_inside_mm / edge_mm, -30, 30)))).astype(np.float32)


def paint(
    target: F32,
    sl: tuple[slice, slice, slice],
    occupancy: F32,
    value_hu: float | F32,
    *,
    raise_only: bool = False,
) -> None:
    """Blend ``value_hu`` into ``target`` where the occupancy says, in place.

    ``raise_only`` never lowers a voxel: ground glass raises lung attenuation but vessels and
    walls it overlaps stay visible through it (painting it over them would carve dark holes that
    no scanner shows).
    """
    region = target[sl]
    delta = value_hu - region
    if raise_only:
        delta = np.maximum(delta, 0.0)
    region += occupancy * delta


def capsule(
    grid: Grid, a_mm: npt.ArrayLike, b_mm: npt.ArrayLike, radius_mm: float
) -> tuple[tuple[slice, slice, slice], F32] | None:
    """Return the occupancy of a capsule (a tube with round ends) from ``a`` to ``b``."""
    a = np.asarray(a_mm, dtype=np.float64)
    b = np.asarray(b_mm, dtype=np.float64)
    pad = radius_mm + 3 * grid.edge_mm
    sl = grid.box_slices(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
    if sl is None:
        return None
    z, y, x = grid.coords(sl)
    d = b - a
    dd = float(d @ d) or 1e-9
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) / dd, 0.0, 1.0)
    dist = np.sqrt(
        (x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (z - a[2] - t * d[2]) ** 2
    )
    return sl, ramp(radius_mm - dist, grid.edge_mm)


def blob(
    grid: Grid,
    center_mm: npt.ArrayLike,
    radius_mm: float,
    *,
    bumps: npt.NDArray[np.float64] | None = None,
    axes_scale: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> tuple[tuple[slice, slice, slice], F32] | None:
    """Return the occupancy of a lobulated ellipsoid.

    ``bumps`` is an (n, 4) array of (unit direction xyz, relative amplitude): the surface radius
    along a direction u is ``radius * (1 + sum amp * max(u . dir, 0) ** 4)``, which gives
    lobulation.
    """
    c = np.asarray(center_mm, dtype=np.float64)
    scale = np.asarray(axes_scale, dtype=np.float64)
    max_amp = 0.0 if bumps is None else float(np.clip(bumps[:, 3], 0, None).sum())
    reach = radius_mm * (1.0 + max_amp) * scale.max() + 3 * grid.edge_mm
    sl = grid.box_slices(c - reach, c + reach)
    if sl is None:
        return None
    z, y, x = grid.coords(sl)
    dx, dy, dz = (x - c[0]) / scale[0], (y - c[1]) / scale[1], (z - c[2]) / scale[2]
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    surface = np.full(
        np.broadcast_shapes(dx.shape, dy.shape, dz.shape), radius_mm, dtype=np.float64
    )
    if bumps is not None and len(bumps):
        inv = 1.0 / np.maximum(r, 1e-6)
        for bx, by, bz, amp in bumps:
            cos = np.clip((dx * bx + dy * by + dz * bz) * inv, 0.0, 1.0)
            surface = surface + radius_mm * amp * cos**4
    return sl, ramp(surface - r, grid.edge_mm)
