"""AP at IoU 0.1 / 0.3 (MONAI's COCO metric) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from training.common.box_ap import BoxImage, average_precision


def _fixed_example() -> list[BoxImage]:
    """Two images, three reference boxes, five detections (pixel xyxy, max exclusive).

    Image A: references g1 = [0,0,10,10], g2 = [20,20,30,30].
      p1 0.9 [0,0,10,10]   IoU 1.0 with g1            -> hit at 0.1 and 0.3
      p2 0.8 [20,20,24,25] area 20, inside g2 (100): IoU 0.2 -> hit at 0.1, miss at 0.3
      p3 0.7 [50,50,60,60] overlaps nothing            -> false positive
    Image B: reference g3 = [0,0,20,20].
      p4 0.6 [0,0,20,20]   IoU 1.0 with g3            -> hit
      p5 0.5 [0,0,20,10]   IoU 0.5, but g3 is taken by p4 -> false positive
    """
    a = BoxImage(
        np.array([[0, 0, 10, 10], [20, 20, 24, 25], [50, 50, 60, 60]], float),
        np.array([0.9, 0.8, 0.7]),
        np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float),
    )
    b = BoxImage(
        np.array([[0, 0, 20, 20], [0, 0, 20, 10]], float),
        np.array([0.6, 0.5]),
        np.array([[0, 0, 20, 20]], float),
    )
    return [a, b]


def test_ap_matches_the_hand_computed_101_point_values() -> None:
    """In score order the detections are p1..p5; 3 references.

    IoU 0.1: hit, hit, FP, hit, FP -> recall 1/3, 2/3, 2/3, 1, 1; precision 1, 1, 2/3, 3/4, 3/5.
      Envelope (best precision at recall >= r): 1 up to recall 2/3, then 3/4.
      101 recall points 0, .01, .., 1: 0..0.66 (67 points) -> 1; 0.67..1 (34 points) -> 0.75.
      AP = (67 + 34 * 0.75) / 101 = 92.5 / 101 = 0.91584.
    IoU 0.3: hit, FP, FP, hit, FP -> recall 1/3, 1/3, 1/3, 2/3, 2/3;
      precision 1, 1/2, 1/3, 1/2, 2/5. Envelope: 1 up to 1/3, then 1/2 up to 2/3, recall above
      2/3 is never reached (precision 0). AP = (34 * 1 + 33 * 0.5 + 34 * 0) / 101 = 0.5.
    (All-point interpolation would give 0.91667 and 0.5.)
    """
    ap = average_precision(_fixed_example(), iou_thresholds=(0.1, 0.3))
    assert ap[0.1] == pytest.approx(92.5 / 101, abs=1e-6)
    assert ap[0.3] == pytest.approx(0.5, abs=1e-6)


def test_a_confident_false_positive_on_an_image_without_fractures_lowers_ap() -> None:
    """Add image C (no reference) with one detection at 0.95, first in score order.

    IoU 0.1: FP, hit, hit, FP, hit, FP -> recall 0, 1/3, 2/3, 2/3, 1, 1;
      precision 0, 1/2, 2/3, 1/2, 3/5, 1/2. Envelope: 2/3 up to recall 2/3, then 3/5.
      Recall points 0..0.66 (67) -> 2/3; 0.67..1 (34) -> 0.6.
      AP = (67 * 2/3 + 34 * 0.6) / 101 = 0.64422.
    """
    c = BoxImage(np.array([[5, 5, 15, 15]], float), np.array([0.95]), np.zeros((0, 4)))
    ap = average_precision([*_fixed_example(), c], iou_thresholds=(0.1,))
    assert ap[0.1] == pytest.approx((67 * 2 / 3 + 34 * 0.6) / 101, abs=1e-6)


def test_ap_needs_reference_boxes_and_sane_thresholds() -> None:
    empty = BoxImage(np.array([[0, 0, 1, 1]], float), np.array([0.5]), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="at least one reference box"):
        average_precision([empty])
    with pytest.raises(ValueError, match=r"iou_thresholds must be in \(0, 1\)"):
        average_precision(_fixed_example(), iou_thresholds=(0.0, 0.5))
