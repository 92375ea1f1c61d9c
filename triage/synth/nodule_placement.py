"""Where a phantom nodule may go: inside a lung as rendered, and wholly inside the scanned slab.

Split from :mod:`triage.synth.ct_phantom` (STYLE H4): the anatomy is drawn there, this module only
judges candidate centres against what has been drawn so far.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from triage.synth.shapes import F32, Grid, blob

LUNG_LIKE_HU = -500.0
"""Background below this is lung parenchyma (aerated); soft tissue, vessels and bone are above."""

MIN_LUNG_FRACTION = 0.6
"""Share of a nodule's volume that must lie on rendered lung: a nodule may abut a vessel or the
pleura, but one drawn into the heart, a large vessel or a rib is not a lung nodule (a solid one is
invisible there, a ground-glass one a dark hole) and would only teach label noise."""


def lung_fraction(
    image: F32, grid: Grid, center: tuple[float, float, float], radius_mm: float
) -> float:
    """Return the occupancy-weighted share of a sphere whose current background is lung-like."""
    shape = blob(grid, center, radius_mm)
    if shape is None:
        return 0.0
    sl, occupancy = shape
    weight = float(occupancy.sum())
    if weight <= 0.0:
        return 0.0
    return float((occupancy * (image[sl] < LUNG_LIKE_HU)).sum()) / weight


def _inside_scan(grid: Grid, z_mm: float, radius_mm: float) -> bool:
    """Return whether a nodule's whole z extent lies within the scanned slices."""
    lo, hi = float(grid.z_mm.min()), float(grid.z_mm.max())
    return lo + radius_mm <= z_mm <= hi - radius_mm


def place_nodule(
    rng: np.random.Generator,
    lung_signed: list[npt.NDArray[np.float32]],
    grid: Grid,
    radius_mm: float,
    image: F32,
    *,
    juxta: bool,
) -> tuple[float, float, float] | None:
    """Pick a centre inside a lung, deep enough (or touching the pleura for juxta-pleural).

    The lung shapes are analytic and the heart and great vessels are painted over them, so a
    candidate must also sit on rendered lung (:data:`MIN_LUNG_FRACTION` of its volume) and lie
    wholly within the scanned slices: half a nodule cut off by the end of a slab is not a finding
    a reader could size.
    """
    for _ in range(60):
        side = int(rng.integers(0, 2))
        k, j, i = (int(rng.integers(0, n)) for n in grid.shape_kji)
        depth = float(lung_signed[side][k, j, i])
        ok = (radius_mm * 0.5 <= depth <= radius_mm * 1.1) if juxta else depth >= radius_mm + 2.0
        if not ok:
            continue
        center = (float(grid.x_mm[i]), float(grid.y_mm[j]), float(grid.z_mm[k]))
        if not _inside_scan(grid, center[2], radius_mm):
            continue
        if lung_fraction(image, grid, center, radius_mm) < MIN_LUNG_FRACTION:
            continue
        return center
    return None
