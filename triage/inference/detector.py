"""Run a RetinaNet as MONAI's ``RetinaNetDetector`` does, with any runtime returning numpy maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from triage.inference.detection import Detections, postprocess
from triage.inference.sliding_window import sliding_window
from triage.inference.spec import DetectionSpec

F32 = npt.NDArray[np.float32]
HeadFn = Callable[[F32], Sequence[F32]]


def pad_to_divisible(image: F32, size_divisible: Sequence[int]) -> F32:
    """Zero-pad ``(1, C, *spatial)`` at the end of each axis to a multiple of ``size_divisible``."""
    spatial = image.shape[2:]
    target = [int(np.ceil(s / k) * k) for s, k in zip(spatial, size_divisible, strict=True)]
    widths = [(0, 0), (0, 0)] + [(0, t - s) for s, t in zip(spatial, target, strict=True)]
    return image if all(w == (0, 0) for w in widths) else np.pad(image, widths, mode="constant")


def uses_sliding_window(image_size: Sequence[int], detection: DetectionSpec) -> bool:
    """Return True when the image holds more voxels than one window (MONAI tutorial's rule)."""
    return int(np.prod(image_size)) > int(np.prod(detection.roi_size))


def detect(
    image: F32, head: HeadFn, detection: DetectionSpec, *, use_inferer: bool | None = None
) -> Detections:
    """Detect boxes in one preprocessed image ``(*spatial)`` in 0..1.

    Args:
        image: network input without batch/channel axes, spatial axes in (i, j[, k]) order.
        head: runs the network on ``(1, 1, *spatial)`` and returns ``cls_*`` then ``box_*`` maps.
        detection: the card's detection settings.
        use_inferer: force sliding windows on/off; by default on when the image exceeds one window.
    """
    size = list(image.shape)
    batch = image[None, None].astype(np.float32)
    padded = pad_to_divisible(batch, detection.size_divisible)
    windowed = uses_sliding_window(size, detection) if use_inferer is None else use_inferer
    if windowed:
        maps = sliding_window(padded, head, detection.roi_size, detection.overlap)
    else:
        maps = list(head(padded))
    return postprocess(maps, padded.shape[2:], size, detection)
