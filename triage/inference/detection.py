"""RetinaNet post-processing in numpy: anchors, box decoding, per-level selection, clipping and NMS.

A line-for-line re-implementation of MONAI's ``AnchorGeneratorWithAnchorShape``,
``BoxCoder.decode_single``, ``BoxSelector.select_boxes_per_image`` and ``batched_nms`` (MONAI 1.6),
so the ONNX path needs no torch and gives the same boxes as ``RetinaNetDetector`` (a parity test
checks it). Boxes are MONAI's StandardMode: ``(x0, y0, [z0,] x1, y1, [z1])`` in voxel coordinates of
the network input, axes in (i, j[, k]) order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from triage.inference.spec import DetectionSpec

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Detections:
    """Selected boxes (StandardMode, network-input voxels), their scores and labels, best first."""

    boxes: F32  # (N, 2 * spatial_dims)
    scores: F32  # (N,)
    labels: npt.NDArray[np.int64]  # (N,)


def cell_anchors(detection: DetectionSpec) -> list[F32]:
    """Return per-level anchors centred on 0: ``round([-shape/2, shape/2] * scale)``."""
    shapes = np.asarray(detection.base_anchor_shapes, dtype=np.float32)
    out = []
    for scale in detection.feature_map_scales:
        half = (np.float32(scale) * shapes) / np.float32(2.0)
        out.append(np.round(np.concatenate([-half, half], axis=1)).astype(np.float32))
    return out


def grid_anchors(
    detection: DetectionSpec, image_size: Sequence[int], grid_sizes: Sequence[Sequence[int]]
) -> list[F32]:
    """Return the anchors of every level for an image and its feature-map sizes (MONAI order)."""
    dims = len(image_size)
    anchors = []
    for size, base in zip(grid_sizes, cell_anchors(detection), strict=True):
        strides = [image_size[a] // size[a] for a in range(dims)]
        centers = [
            np.arange(size[a], dtype=np.int64) * strides[a] + strides[a] // 2 for a in range(dims)
        ]
        mesh = np.meshgrid(*centers, indexing="ij")
        shifts = np.stack([m.reshape(-1) for m in mesh] * 2, axis=1).astype(np.float32)
        anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 2 * dims))
    return anchors


def reshape_map(result_map: F32, num_anchors: int) -> F32:
    """Return ``(B, C*A, *spatial)`` head output as ``(B, prod(spatial)*A, C)`` (MONAI order)."""
    batch, channels = result_map.shape[:2]
    spatial = result_map.shape[2:]
    per_anchor = channels // num_anchors
    view = result_map.reshape(batch, num_anchors, per_anchor, *spatial)
    dims = len(spatial)
    order = (0, *range(3, 3 + dims), 1, 2)
    return np.ascontiguousarray(view.transpose(order)).reshape(batch, -1, per_anchor)


def decode_boxes(rel_codes: F32, anchors: F32, weights: Sequence[float]) -> F32:
    """Decode regression ``(N, 2*dims)`` against StandardMode anchors (MONAI ``BoxCoder``)."""
    dims = anchors.shape[1] // 2
    clip = np.float32(math.log(1000.0 / 16))
    w = np.asarray(weights, dtype=np.float32)
    size = anchors[:, dims:] - anchors[:, :dims]
    center = anchors[:, :dims] + np.float32(0.5) * size
    lo, hi = [], []
    for axis in range(dims):
        d_ctr = rel_codes[:, axis] / w[axis]
        d_size = np.minimum(rel_codes[:, dims + axis] / w[dims + axis], clip)
        ctr = d_ctr * size[:, axis] + center[:, axis]
        half = np.float32(0.5) * (np.exp(d_size) * size[:, axis])
        lo.append(ctr - half)
        hi.append(ctr + half)
    return np.stack(lo + hi, axis=1).astype(np.float32)


def _sigmoid(x: F32) -> F32:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


def _clip_to_image(boxes: F32, image_size: Sequence[int]) -> tuple[F32, npt.NDArray[np.bool_]]:
    dims = len(image_size)
    out = boxes.copy()
    for axis in range(dims):
        out[:, axis] = np.clip(out[:, axis], 0, image_size[axis])
        out[:, axis + dims] = np.clip(out[:, axis + dims], 0, image_size[axis])
    keep = np.ones(len(out), dtype=bool)
    for axis in range(dims):
        keep &= out[:, axis + dims] >= out[:, axis] + 1
    return out[keep], keep


def box_iou(boxes: F32, box: F32) -> F32:
    """Return the IoU of each of ``boxes`` with one ``box`` (StandardMode), in float32."""
    dims = boxes.shape[1] // 2
    area = np.prod(boxes[:, dims:] - boxes[:, :dims], axis=1, dtype=np.float32)
    area_one = np.prod(box[dims:] - box[:dims], dtype=np.float32)
    lt = np.maximum(boxes[:, :dims], box[:dims])
    rb = np.minimum(boxes[:, dims:], box[dims:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1, dtype=np.float32)
    union = area + area_one - inter
    iou: F32 = (inter / (union + np.finfo(np.float32).eps)).astype(np.float32)
    return iou


def nms(boxes: F32, scores: F32, threshold: float, max_proposals: int) -> npt.NDArray[np.int64]:
    """Greedy NMS; keeps boxes whose IoU with every kept, higher-scoring box is <= threshold."""
    order = np.argsort(-scores, kind="stable")
    ordered = boxes[order]
    pick: list[int] = []
    idxs = np.arange(len(order))
    while idxs.size:
        i = int(idxs[0])
        pick.append(i)
        if len(pick) >= max_proposals >= 1:
            break
        keep = box_iou(ordered[idxs], ordered[i]) <= threshold
        keep[0] = False
        idxs = idxs[keep]
    return order[np.asarray(pick, dtype=np.int64)]


BoxRows = Callable[[npt.NDArray[np.int64]], F32]


def select_boxes(
    boxes_per_level: Sequence[BoxRows],
    logits_per_level: Sequence[F32],
    image_size: Sequence[int],
    detection: DetectionSpec,
) -> Detections:
    """Per level: sigmoid, score threshold, top-k, clip; then class-wise NMS over all levels.

    A level's boxes come from a function that decodes the given anchor rows, so that only the
    top-k candidates are decoded (MONAI decodes every anchor first; each box depends on its own
    anchor only, so the result is identical).
    """
    all_boxes, all_scores, all_labels = [], [], []
    for boxes, logits in zip(boxes_per_level, logits_per_level, strict=True):
        num_classes = logits.shape[-1]
        scores = _sigmoid(logits).reshape(-1)
        flat_idx = np.nonzero(scores > detection.score_thresh)[0]
        scores = scores[flat_idx]
        k = min(detection.topk_candidates_per_level, flat_idx.size)
        top = np.argsort(-scores, kind="stable")[:k]
        flat_idx, scores = flat_idx[top], scores[top]
        rows = flat_idx // num_classes
        clipped, keep = _clip_to_image(boxes(rows), image_size)
        all_boxes.append(clipped)
        all_scores.append(scores[keep])
        all_labels.append((flat_idx % num_classes)[keep])
    boxes_t = np.concatenate(all_boxes).astype(np.float32)
    scores_t = np.concatenate(all_scores).astype(np.float32)
    labels_t = np.concatenate(all_labels).astype(np.int64)
    if boxes_t.shape[0] == 0:
        return Detections(boxes_t, scores_t, labels_t)
    offsets = labels_t.astype(np.float32) * (boxes_t.max() + 1)
    keep_idx = nms(
        boxes_t + offsets[:, None], scores_t, detection.nms_thresh, detection.detections_per_img
    )
    return Detections(boxes_t[keep_idx], scores_t[keep_idx], labels_t[keep_idx])


def postprocess(
    head_outputs: Sequence[F32],
    padded_size: Sequence[int],
    image_size: Sequence[int],
    detection: DetectionSpec,
) -> Detections:
    """Turn the six (or 2 x levels) head maps of one image into selected boxes.

    Args:
        head_outputs: ``cls_0..cls_L, box_0..box_L`` maps, each ``(1, C*A, *spatial)``.
        padded_size: spatial size the network saw (after padding to ``size_divisible``).
        image_size: spatial size before padding; boxes are clipped to it.
        detection: the card's detection settings.
    """
    n_levels = len(head_outputs) // 2
    cls_maps, box_maps = head_outputs[:n_levels], head_outputs[n_levels:]
    grid_sizes = [m.shape[2:] for m in cls_maps]
    anchors = grid_anchors(detection, padded_size, grid_sizes)
    logits = [reshape_map(m, detection.num_anchors)[0] for m in cls_maps]
    regs = [reshape_map(m, detection.num_anchors)[0] for m in box_maps]
    weights = detection.box_coder_weights
    decoders: list[BoxRows] = [
        partial(_decode_rows, r, a, weights) for r, a in zip(regs, anchors, strict=True)
    ]
    return select_boxes(decoders, logits, image_size, detection)


def _decode_rows(
    rel_codes: F32, anchors: F32, weights: Sequence[float], rows: npt.NDArray[np.int64]
) -> F32:
    return decode_boxes(rel_codes[rows], anchors[rows], weights)
