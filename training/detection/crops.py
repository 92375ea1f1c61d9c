"""Box-aware random crops and augmentations for detection training (2-D or 3-D, numpy).

Crops are drawn positive (centred near a random box), hard negative (centred near a place where a
trained model once fired for nothing, see ``hard_negatives``) or negative (anywhere); flips and
in-plane 90 degree rotations move the boxes with the image, and intensities get contrast / offset /
noise jitter so the model does not learn one generator's grey levels. Boxes are MONAI StandardMode
in voxel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Sample:
    """One training image (spatial axes only, 0..1) and its boxes (N, 2*dims).

    ``hard``: centres (K, dims) where a trained model fired for nothing (mined; may be empty).
    ``missed``: indices into ``boxes`` of targets a trained model missed (mined; may be empty).
    """

    image: F32
    boxes: F32
    hard: F32 = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    missed: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def random_crop(
    sample: Sample,
    crop: tuple[int, ...],
    rng: np.random.Generator,
    *,
    positive: bool,
    hard: bool = False,
    box_index: int | None = None,
) -> Sample:
    """Return a crop of ``crop`` voxels; boxes whose centre falls inside are kept and clipped.

    ``positive``: centred near a random box; ``hard``: near a random mined false-positive centre
    (``sample.hard``); both fall back to anywhere when the sample has none. ``box_index`` picks
    the box a positive crop is centred near (default: a random one).
    """
    dims = len(crop)
    shape = np.asarray(sample.image.shape)
    image = sample.image
    if np.any(shape < crop):  # pad small images at the end with background 0
        image = np.pad(image, [(0, max(c - s, 0)) for s, c in zip(shape, crop, strict=True)])
        shape = np.asarray(image.shape)
    hi = shape - np.asarray(crop)
    if positive and len(sample.boxes):
        pick = int(rng.integers(len(sample.boxes))) if box_index is None else box_index
        box = sample.boxes[pick]
        center = (box[:dims] + box[dims:]) / 2
        jitter = rng.uniform(-0.35, 0.35, dims) * np.asarray(crop)
        start = np.clip(np.round(center - np.asarray(crop) / 2 + jitter), 0, hi).astype(int)
    elif hard and len(sample.hard):
        center = sample.hard[int(rng.integers(len(sample.hard)))]
        jitter = rng.uniform(-0.25, 0.25, dims) * np.asarray(crop)
        start = np.clip(np.round(center - np.asarray(crop) / 2 + jitter), 0, hi).astype(int)
    else:
        start = np.array([int(rng.integers(0, h + 1)) for h in hi])
    sl = tuple(slice(s, s + c) for s, c in zip(start, crop, strict=True))
    boxes = sample.boxes - np.concatenate([start, start]).astype(np.float32)
    centers = (boxes[:, :dims] + boxes[:, dims:]) / 2 if len(boxes) else np.zeros((0, dims))
    inside = np.all((centers >= 0) & (centers < np.asarray(crop)), axis=1)
    boxes = boxes[inside]
    lim = np.concatenate([np.asarray(crop), np.asarray(crop)]).astype(np.float32)
    boxes = np.clip(boxes, 0, lim)
    return Sample(np.ascontiguousarray(image[sl]), boxes.astype(np.float32))


def augment(sample: Sample, rng: np.random.Generator) -> Sample:
    """Random flips on every axis, a 90 degree turn in the first two axes, and intensity jitter."""
    image, boxes = sample.image, sample.boxes.copy()
    dims = image.ndim
    for axis in range(dims):
        if rng.random() < 0.5:
            n = image.shape[axis]
            image = np.flip(image, axis=axis)
            lo, hi = boxes[:, axis].copy(), boxes[:, axis + dims].copy()
            # voxel centres at integers: index i -> n - 1 - i, so a box [lo, hi] -> [n-1-hi, n-1-lo]
            boxes[:, axis], boxes[:, axis + dims] = n - 1 - hi, n - 1 - lo
    if image.shape[0] == image.shape[1] and rng.random() < 0.5:
        image = np.swapaxes(image, 0, 1)
        boxes = boxes[:, [1, 0, *range(2, dims), dims + 1, dims, *range(dims + 2, 2 * dims)]]
    contrast = rng.uniform(0.85, 1.15)
    offset = rng.uniform(-0.06, 0.06)
    noise = rng.normal(0, rng.uniform(0.0, 0.03), image.shape).astype(np.float32)
    image = np.clip(image * contrast + offset + noise, 0, 1).astype(np.float32)
    return Sample(np.ascontiguousarray(image), boxes.astype(np.float32))
