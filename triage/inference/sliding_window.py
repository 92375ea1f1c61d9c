"""Sliding-window inference for multi-scale head outputs: MONAI's constant-weight mode in numpy.

MONAI's ``sliding_window_inference`` pads an image smaller than the window, visits windows at
``int(roi * (1 - overlap))`` steps (the last one flush with the border), scales each window's
position to every output's resolution, averages overlapping windows, and crops the padding back off.
This module does exactly that for ``mode="constant"``, so the ONNX path matches
``RetinaNetDetector(use_inferer=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Predictor = Callable[[F32], Sequence[F32]]


def scan_starts(
    image_size: Sequence[int], roi_size: Sequence[int], overlap: float
) -> list[list[int]]:
    """Return the window start indices along each axis (MONAI ``dense_patch_slices``).

    >>> scan_starts([10], [4], 0.25)
    [[0, 3, 6]]
    """
    starts: list[list[int]] = []
    for size, roi in zip(image_size, roi_size, strict=True):
        interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
        num = int(math.ceil(float(size) / interval))
        count = next((d + 1 for d in range(num) if d * interval + roi >= size), 1)
        starts.append(
            [idx * interval - max(idx * interval + roi - size, 0) for idx in range(count)]
        )
    return starts


def sliding_window(
    image: F32, predictor: Predictor, roi_size: Sequence[int], overlap: float
) -> list[F32]:
    """Run ``predictor`` over windows of ``image`` (``(1, C, *spatial)``) and stitch every output.

    Each output of the predictor may have its own resolution (an FPN level); window positions are
    scaled by ``output_size / roi_size`` per axis, as MONAI does.
    """
    dims = image.ndim - 2
    orig = list(image.shape[2:])
    roi = [min(r, 10**9) if r > 0 else s for r, s in zip(roi_size, orig, strict=True)]
    pad = [
        (max(r - s, 0) // 2, max(r - s, 0) - max(r - s, 0) // 2)
        for r, s in zip(roi, orig, strict=True)
    ]
    if any(p for pair in pad for p in pair):
        image = np.pad(image, [(0, 0), (0, 0), *pad], mode="constant")
    size = list(image.shape[2:])
    grids = np.meshgrid(*scan_starts(size, roi, overlap), indexing="ij")
    windows = [tuple(int(g.reshape(-1)[n]) for g in grids) for n in range(grids[0].size)]
    outputs: list[F32] = []
    counts: list[F32] = []
    scales: list[list[float]] = []
    for start in windows:
        sl = tuple(slice(s, s + r) for s, r in zip(start, roi, strict=True))
        patch_out = predictor(np.ascontiguousarray(image[(slice(None), slice(None), *sl)]))
        if not outputs:
            for out in patch_out:
                z = [o / float(r) for o, r in zip(out.shape[2:], roi, strict=True)]
                scales.append(z)
                shape = [
                    out.shape[0],
                    out.shape[1],
                    *(int(s * f) for s, f in zip(size, z, strict=True)),
                ]
                outputs.append(np.zeros(shape, dtype=np.float32))
                counts.append(np.zeros([1, 1, *shape[2:]], dtype=np.float32))
                for w in windows:
                    counts[-1][(slice(None), slice(None), *_scaled(w, roi, z))] += 1.0
        for n, out in enumerate(patch_out):
            outputs[n][(slice(None), slice(None), *_scaled(start, roi, scales[n]))] += out
    result = [o / c for o, c in zip(outputs, counts, strict=True)]
    if any(p for pair in pad for p in pair):
        result = [_crop_padding(r, pad, orig, roi, dims) for r in result]
    return result


def _scaled(start: Sequence[int], roi: Sequence[int], z: Sequence[float]) -> tuple[slice, ...]:
    return tuple(slice(int(s * f), int((s + r) * f)) for s, r, f in zip(start, roi, z, strict=True))


def _crop_padding(
    out: F32, pad: Sequence[tuple[int, int]], orig: Sequence[int], roi: Sequence[int], dims: int
) -> F32:
    zoom = [o / r for o, r in zip(out.shape[2:], roi, strict=True)]
    sl = [
        slice(int(round(pad[d][0] * zoom[d])), int(round((pad[d][0] + orig[d]) * zoom[d])))
        for d in range(dims)
    ]
    return np.ascontiguousarray(out[(slice(None), slice(None), *sl)])
