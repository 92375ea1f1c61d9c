"""The one array-with-geometry type (STYLE H7).

Axis order is fixed here, once: ``array`` is indexed ``[k, j, i]`` (slice, row, column) and
``affine_lps`` maps a voxel index column ``(i, j, k, 1)`` to patient LPS millimetres. Networks that
follow MONAI's convention take ``(i, j, k)``; :func:`to_ijk` gives that view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Volume:
    """A 3-D image and the affine that places it in the patient (LPS, millimetres)."""

    array: npt.NDArray[np.float32]  # (k, j, i) = (slice, row, column)
    affine_lps: npt.NDArray[np.float64]  # 4x4: voxel (i, j, k, 1) -> patient LPS mm

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3-D (k, j, i), got shape {self.array.shape}")
        if self.affine_lps.shape != (4, 4):
            raise ValueError(f"Volume.affine_lps must be 4x4, got {self.affine_lps.shape}")

    @property
    def spacing_ijk_mm(self) -> tuple[float, float, float]:
        """Return the voxel size along i, j and k in millimetres."""
        norms = np.linalg.norm(self.affine_lps[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Return the number of voxels along i, j and k."""
        k, j, i = self.array.shape
        return (i, j, k)

    def to_ijk(self) -> npt.NDArray[np.float32]:
        """Return the array as ``[i, j, k]`` (MONAI's channel-less layout), contiguous."""
        return np.ascontiguousarray(self.array.transpose(2, 1, 0))


def affine_from_geometry(
    origin_lps_mm: tuple[float, float, float],
    directions: npt.NDArray[np.float64],
    spacing_ijk_mm: tuple[float, float, float],
) -> npt.NDArray[np.float64]:
    """Return the 4x4 voxel->LPS affine from an origin, unit direction columns and voxel sizes.

    ``directions`` is 3x3 with the unit vector of axis i, j, k in columns 0, 1, 2.

    >>> a = affine_from_geometry((1.0, 2.0, 3.0), np.eye(3), (0.5, 0.5, 2.0))
    >>> (a @ np.array([2, 0, 1, 1.0]))[:3].tolist()
    [2.0, 2.0, 5.0]
    """
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(directions, dtype=np.float64) * np.asarray(spacing_ijk_mm)[None, :]
    affine[:3, 3] = origin_lps_mm
    return affine
