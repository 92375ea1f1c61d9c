"""Voxel <-> patient mapping and reorientation to a model's axis codes (pure numpy).

Axis codes follow MONAI / nibabel: ``"RAS"`` means the first array axis (i) points to the patient's
Right, the second (j) Anterior, the third (k) Superior. DICOM's patient frame is LPS (+x Left,
+y Posterior, +z Superior).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from triage.imaging.volume import Volume

_CODE_TO_LPS = {
    "L": (0, 1.0),
    "R": (0, -1.0),
    "P": (1, 1.0),
    "A": (1, -1.0),
    "S": (2, 1.0),
    "I": (2, -1.0),
}


def voxel_to_lps(
    affine_lps: npt.NDArray[np.float64], ijk: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Map voxel indices ``(..., 3)`` in (i, j, k) order to LPS millimetres.

    >>> voxel_to_lps(np.diag([2.0, 2.0, 3.0, 1.0]), [1, 1, 1]).tolist()
    [2.0, 2.0, 3.0]
    """
    pts = np.asarray(ijk, dtype=np.float64)
    return np.asarray(pts @ affine_lps[:3, :3].T + affine_lps[:3, 3], dtype=np.float64)


def lps_to_voxel(
    affine_lps: npt.NDArray[np.float64], xyz_lps_mm: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Map LPS millimetres ``(..., 3)`` to continuous voxel indices (i, j, k).

    >>> lps_to_voxel(np.diag([2.0, 2.0, 3.0, 1.0]), [2.0, 2.0, 3.0]).tolist()
    [1.0, 1.0, 1.0]
    """
    pts = np.asarray(xyz_lps_mm, dtype=np.float64)
    inv = np.linalg.inv(affine_lps)
    return np.asarray(pts @ inv[:3, :3].T + inv[:3, 3], dtype=np.float64)


def axis_codes(affine_lps: npt.NDArray[np.float64]) -> str:
    """Return the nearest axis codes (MONAI convention) of an affine.

    >>> axis_codes(np.eye(4))
    'LPS'
    """
    directions = affine_lps[:3, :3] / np.linalg.norm(affine_lps[:3, :3], axis=0)[None, :]
    codes = []
    for col in range(3):
        axis = int(np.argmax(np.abs(directions[:, col])))
        positive = directions[axis, col] > 0
        codes.append(("L", "P", "S")[axis] if positive else ("R", "A", "I")[axis])
    return "".join(codes)


def reorient(volume: Volume, target_codes: str) -> Volume:
    """Return the volume with its axes permuted and flipped to the target codes; no resampling.

    Raises:
        ValueError: if ``target_codes`` is not three distinct axes such as ``"RAS"``, or the
            volume's axes are too oblique to map one-to-one onto patient axes.
    """
    codes = target_codes.upper()
    if len(codes) != 3 or any(c not in _CODE_TO_LPS for c in codes):
        raise ValueError(
            f"target_codes must be three of L/R, P/A, S/I such as 'RAS', got {target_codes!r}"
        )
    if len({_CODE_TO_LPS[c][0] for c in codes}) != 3:
        raise ValueError(f"target_codes must name three different axes, got {target_codes!r}")
    current = axis_codes(volume.affine_lps)
    src_axis_of_lps = {_CODE_TO_LPS[c][0]: (n, _CODE_TO_LPS[c][1]) for n, c in enumerate(current)}
    if len(src_axis_of_lps) != 3:
        raise ValueError(
            f"volume axes must map one-to-one onto patient axes, got codes {current!r}"
        )
    data_ijk = volume.to_ijk()
    perm: list[int] = []
    flips: list[bool] = []
    for c in codes:
        lps_axis, want_sign = _CODE_TO_LPS[c]
        src, have_sign = src_axis_of_lps[lps_axis]
        perm.append(src)
        flips.append(want_sign != have_sign)
    out = np.transpose(data_ijk, perm)
    affine = np.eye(4)
    affine[:3, :3] = volume.affine_lps[:3, perm]
    affine[:3, 3] = volume.affine_lps[:3, 3]
    for axis, flip in enumerate(flips):
        if flip:
            n = out.shape[axis]
            out = np.flip(out, axis=axis)
            affine[:3, 3] = affine[:3, 3] + affine[:3, axis] * (n - 1)
            affine[:3, axis] = -affine[:3, axis]
    return Volume(array=np.ascontiguousarray(out.transpose(2, 1, 0)), affine_lps=affine)


def is_orthonormal(affine_lps: npt.NDArray[np.float64], *, tolerance: float = 1e-3) -> bool:
    """Return True when the voxel axes are mutually perpendicular (no gantry tilt / shear).

    >>> is_orthonormal(np.diag([0.7, 0.7, 2.5, 1.0]))
    True
    """
    directions = affine_lps[:3, :3] / np.linalg.norm(affine_lps[:3, :3], axis=0)[None, :]
    return bool(np.allclose(directions.T @ directions, np.eye(3), atol=tolerance))
