"""Average precision of box detections at fixed IoU thresholds, with MONAI's COCO metric.

Matching is MONAI's ``matching_batch`` (pycocotools' rule): per image, detections in descending
score order each take the still-unmatched reference box they overlap most, if that IoU is at least
the threshold; every other detection is a false positive. AP is MONAI's ``COCOMetric``: the
precision envelope (best precision at any recall at least r) sampled at the 101 recall points
0, 0.01, ..., 1 and averaged (COCO's 101-point interpolation; recall never reached counts as
precision 0). Fractures use IoU 0.1 and 0.3: their boxes are small and loosely drawn, so the
stricter COCO thresholds would mostly measure annotation style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou

F64 = npt.NDArray[np.float64]
FRACTURE_AP_IOUS = (0.1, 0.3)


@dataclass(frozen=True)
class BoxImage:
    """One image: predicted boxes with scores, and reference boxes (StandardMode, same frame)."""

    pred_boxes: F64  # (N, 2 * dims): x0, y0[, z0], x1, y1[, z1]
    pred_scores: F64  # (N,)
    gt_boxes: F64  # (G, 2 * dims)


def average_precision(
    images: Sequence[BoxImage],
    *,
    iou_thresholds: Sequence[float] = FRACTURE_AP_IOUS,
    max_detections: int = 100,
) -> dict[float, float]:
    """Return ``{iou: AP}`` over all images (one class), COCO 101-point interpolation.

    Args:
        images: per image, predictions and reference boxes in the same pixel / voxel frame.
        iou_thresholds: IoU at which a detection counts as a hit, each in (0, 1).
        max_detections: highest-scoring detections kept per image.

    Raises:
        ValueError: no reference box in any image (AP is undefined), or a threshold outside (0, 1).
    """
    ious = sorted({float(t) for t in iou_thresholds})
    if not ious or ious[0] <= 0 or ious[-1] >= 1:
        raise ValueError(f"iou_thresholds must be in (0, 1), got {list(iou_thresholds)}")
    if sum(len(im.gt_boxes) for im in images) == 0:
        raise ValueError("average precision needs at least one reference box, got none")
    metric = COCOMetric(
        classes=["target"],
        iou_list=ious,
        iou_range=(ious[0], ious[-1], (ious[-1] - ious[0]) or 1.0),
        max_detection=(max_detections,),
        per_class=False,
        verbose=False,
    )
    dims2 = next(im.gt_boxes.shape[1] for im in images if len(im.gt_boxes))
    results = matching_batch(
        iou_fn=_iou,
        iou_thresholds=[float(t) for t in metric.iou_thresholds],
        pred_boxes=[np.asarray(im.pred_boxes, np.float64).reshape(-1, dims2) for im in images],
        pred_classes=[np.zeros(len(im.pred_scores), dtype=np.int64) for im in images],
        pred_scores=[np.asarray(im.pred_scores, np.float64).reshape(-1) for im in images],
        gt_boxes=[np.asarray(im.gt_boxes, np.float64).reshape(-1, dims2) for im in images],
        gt_classes=[np.zeros(len(im.gt_boxes), dtype=np.int64) for im in images],
        max_detections=max_detections,
    )
    values, _ = metric(results)
    return {t: float(values[f"AP_IoU_{t:.2f}_MaxDet_{max_detections}"]) for t in ious}


def _iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """MONAI's pairwise IoU of StandardMode boxes, as a numpy array (N, M)."""
    return np.asarray(box_iou(boxes1, boxes2))
