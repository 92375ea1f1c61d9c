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


def flip_head_outputs(maps: Sequence[F32], axes: Sequence[int], num_anchors: int) -> list[F32]:
    """Map the head outputs of a flipped image back onto the unflipped image's anchors.

    Each map is flipped back along ``axes`` (spatial axes of the image, i.e. map axes ``2 + a``);
    a regression map also changes the sign of its centre offset along each flipped axis. This is
    exact because every anchor is symmetric about its centre and every level's stride divides the
    padded image, so the anchor at ``p`` in the flipped image is the anchor at ``size - p`` here.
    Maps are ``cls_0..cls_L`` then ``box_0..box_L``, each ``(1, C*A, *spatial)``.
    """
    n_levels = len(maps) // 2
    out: list[F32] = []
    for idx, m in enumerate(maps):
        back = np.array(np.flip(m, axis=tuple(2 + a for a in axes)), dtype=np.float32, order="C")
        if idx >= n_levels:
            per_anchor = back.shape[1] // num_anchors
            view = back.reshape(back.shape[0], num_anchors, per_anchor, *back.shape[2:])
            view[:, :, list(axes)] *= np.float32(-1.0)
        out.append(back)
    return out


def _head_maps(padded: F32, head: HeadFn, detection: DetectionSpec, windowed: bool) -> list[F32]:
    if windowed:
        return sliding_window(padded, head, detection.roi_size, detection.overlap)
    return list(head(padded))


def detect(
    image: F32, head: HeadFn, detection: DetectionSpec, *, use_inferer: bool | None = None
) -> Detections:
    """Detect boxes in one preprocessed image ``(*spatial)`` in 0..1.

    Args:
        image: network input without batch/channel axes, spatial axes in (i, j[, k]) order.
        head: runs the network on ``(1, 1, *spatial)`` and returns ``cls_*`` then ``box_*`` maps.
        detection: the card's detection settings.
        use_inferer: force sliding windows on/off; by default on when the image exceeds one window.

    With the card's ``tta_flip_axes``, the padded image is also run flipped along each listed axis
    set; the maps are flipped back (:func:`flip_head_outputs`) and averaged with the plain pass,
    logits and regressions alike, as the sliding window averages overlapping windows.
    """
    size = list(image.shape)
    batch = image[None, None].astype(np.float32)
    padded = pad_to_divisible(batch, detection.size_divisible)
    windowed = uses_sliding_window(size, detection) if use_inferer is None else use_inferer
    maps = _head_maps(padded, head, detection, windowed)
    for axes in detection.tta_flip_axes:
        flipped = np.ascontiguousarray(np.flip(padded, axis=tuple(2 + a for a in axes)))
        extra = flip_head_outputs(
            _head_maps(flipped, head, detection, windowed), axes, detection.num_anchors
        )
        maps = [m + e for m, e in zip(maps, extra, strict=True)]
    if detection.tta_flip_axes:
        passes = np.float32(1 + len(detection.tta_flip_axes))
        maps = [m / passes for m in maps]
    return postprocess(maps, padded.shape[2:], size, detection)
