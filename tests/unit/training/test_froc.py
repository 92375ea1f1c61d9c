"""FROC / CPM with LUNA16 rules against a small example computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.common.froc import (
    bootstrap_ci,
    froc,
    match_scan,
    scan_from_boxes,
    scan_from_centers,
    subgroup_sensitivity,
    target_best_scores,
    threshold_at_fp_rate,
)

pytestmark = pytest.mark.torch  # MONAI's FROC helpers import torch


def _example() -> list:
    # Scan A: nodules N1 (r 5) and N2 (r 3). Detections: 0.9 on N1, 0.7 also on N1 (ignored: not a
    # second TP, not an FP), 0.6 on N2, 0.4 nowhere (FP).
    a = scan_from_centers(
        np.array([[0, 0, 0], [2, 0, 0], [30, 0, 0], [90, 90, 90.0]]),
        np.array([0.9, 0.7, 0.6, 0.4]),
        np.array([[1, 0, 0], [31, 0, 0.0]]),
        np.array([5.0, 3.0]),
    )
    # Scan B: nodule N3 (r 4) missed; detections 0.8 and 0.5 are both FPs.
    b = scan_from_centers(
        np.array([[50, 0, 0], [0, 50, 0.0]]),
        np.array([0.8, 0.5]),
        np.array([[0, 0, 0.0]]),
        np.array([4.0]),
    )
    return [a, b]


def test_luna16_matching_counts_one_hit_per_nodule_and_ignores_duplicates() -> None:
    fps, tps, n = match_scan(_example()[0])
    assert (sorted(fps), sorted(tps), n) == ([0.4], [0.6, 0.9], 2)


def test_froc_and_cpm_match_the_hand_computation() -> None:
    # Thresholds from high to low: 0.9 -> TP1 (FP 0); 0.8 -> FP 1 (0.5/scan); 0.6 -> TP2, sens 2/3
    # at 0.5 FP/scan; 0.5 -> FP 2 (1/scan); 0.4 -> FP 3 (1.5/scan). Sensitivity never exceeds 2/3.
    fps, sens, at, cpm = froc(_example())
    assert fps.tolist() == [1.5, 1.0, 0.5, 0.5, 0.0, 0.0]
    np.testing.assert_allclose(sens, [2 / 3, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 0.0])
    # LUNA16 rates 1/8, 1/4 fall between (0 FP, 1/3) and (0.5 FP, 1/3 then 2/3): np.interp on the
    # curve.
    np.testing.assert_allclose(at, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert cpm == pytest.approx((2 * (1 / 3) + 5 * (2 / 3)) / 7)


def test_box_rule_hits_when_the_predicted_centre_is_inside_the_reference_box() -> None:
    scan = scan_from_boxes(
        np.array([[5.0, 5.0], [50.0, 50.0]]), np.array([0.9, 0.8]), np.array([[0, 0, 10, 10.0]])
    )
    assert match_scan(scan) == ([0.8], [0.9], 1)


def test_bootstrap_interval_contains_the_point_estimate() -> None:
    scans = _example() * 5
    _, _, _, cpm = froc(scans)
    lo, hi = bootstrap_ci(scans, n_boot=200, seed=1)["cpm"]
    assert lo <= cpm <= hi


def test_froc_without_any_reference_target_is_refused() -> None:
    empty = scan_from_centers(np.zeros((1, 3)), np.array([0.5]), np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match="at least one reference nodule"):
        froc([empty])


def test_threshold_at_one_fp_per_scan_keeps_at_most_that_many_false_positives() -> None:
    # FP scores over the two scans: 0.8, 0.5, 0.4. One FP per scan allows two: the threshold must
    # drop the third-highest (0.4) and keep 0.5.
    scans = _example()
    t = threshold_at_fp_rate(scans, 1.0)
    assert 0.4 < t <= 0.5
    # Half an FP per scan allows one: 0.8 kept, 0.5 dropped.
    assert 0.5 < threshold_at_fp_rate(scans, 0.5) <= 0.8
    # Allowing more FPs than there are keeps every detection.
    assert threshold_at_fp_rate(scans, 8.0) == float("-inf")


def test_best_scores_are_per_target_and_minus_inf_when_missed() -> None:
    a, b = _example()
    np.testing.assert_allclose(target_best_scores(a), [0.9, 0.6])
    assert target_best_scores(b).tolist() == [float("-inf")]


def test_subgroup_sensitivity_counts_each_target_in_each_of_its_groups() -> None:
    scans = _example()
    labels = [
        [{"kind": "solid", "size": "<6mm"}, {"kind": "ground_glass", "size": "<6mm"}],
        [{"kind": "solid", "size": ">=15mm"}],
    ]
    # At 0.7: N1 (0.9) detected, N2 (0.6) not, N3 never hit.
    groups = subgroup_sensitivity(scans, labels, 0.7)
    assert groups["all"] == {"n": 3, "detected": 1, "sensitivity": pytest.approx(1 / 3, abs=1e-4)}
    assert groups["kind=solid"] == {"n": 2, "detected": 1, "sensitivity": 0.5}
    assert groups["kind=ground_glass"]["detected"] == 0
    assert groups["size=<6mm"] == {"n": 2, "detected": 1, "sensitivity": 0.5}
    assert groups["size=>=15mm"]["detected"] == 0
    assert subgroup_sensitivity(scans, labels, 0.5)["size=<6mm"]["detected"] == 2


def test_subgroup_labels_must_cover_every_target() -> None:
    with pytest.raises(ValueError, match="labels must describe every target"):
        subgroup_sensitivity(_example(), [[{"kind": "solid"}], []], 0.5)
