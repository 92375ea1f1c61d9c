"""Rotation matrices for the geometry property tests."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def rotation(yaw: float, pitch: float, roll: float) -> npt.NDArray[np.float64]:
    """Return the rotation matrix of the given Z-Y-X Euler angles (radians)."""
    cz, sz = math.cos(yaw), math.sin(yaw)
    cy, sy = math.cos(pitch), math.sin(pitch)
    cx, sx = math.cos(roll), math.sin(roll)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    return rz @ ry @ rx
