"""Shared type aliases (like MONAI's ``type_definitions.py``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float2 = tuple[float, float]
Float3 = tuple[float, float, float]
Int3 = tuple[int, int, int]
FloatArray = npt.NDArray[np.float32]
DoubleArray = npt.NDArray[np.float64]
