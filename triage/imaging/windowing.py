"""Intensity windows, as MONAI's ``ScaleIntensityRange(clip=True)`` applies them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def scale_window(
    array: npt.NDArray[np.float32],
    low: float,
    high: float,
    *,
    out_low: float = 0.0,
    out_high: float = 1.0,
) -> npt.NDArray[np.float32]:
    """Map ``[low, high]`` linearly to ``[out_low, out_high]`` and clip, in float32.

    >>> hu = np.array([-1024.0, -362.0, 300.0, 2000.0], dtype=np.float32)
    >>> scale_window(hu, -1024, 300).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    if not high > low:
        raise ValueError(f"window high must be > low, got low={low!r}, high={high!r}")
    scaled = (array.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    scaled = scaled * np.float32(out_high - out_low) + np.float32(out_low)
    clipped: npt.NDArray[np.float32] = np.clip(scaled, out_low, out_high).astype(np.float32)
    return clipped
