"""The rescoring stage's pure core: patches around candidates, score combination, re-ordering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage.core.errors import ModelUnavailable
from triage.inference.card import ModelCard, RescoringSpec
from triage.inference.detection import Detections
from triage.inference.rescoring import (
    apply_rescoring,
    combine_scores,
    extract_patches,
    patch_origins,
    rescore,
)

SHA = "0" * 64


def _spec(patch_size: tuple[int, ...], weight: float = 0.5) -> RescoringSpec:
    return RescoringSpec(file="r.onnx", sha256=SHA, patch_size=patch_size, weight=weight)


def test_interior_patch_is_the_image_around_the_rounded_centre() -> None:
    image = np.arange(20 * 18 * 10, dtype=np.float32).reshape(20, 18, 10)
    (patch,) = extract_patches(image, [[9.6, 8.2, 4.5]], (6, 4, 2))
    # centre rounds to (10, 8, 4) (numpy rounds half to even), origin = centre - size // 2
    np.testing.assert_array_equal(patch[0], image[7:13, 6:10, 3:5])


def test_patch_at_the_border_is_zero_outside_the_image() -> None:
    image = np.ones((8, 8), dtype=np.float32)
    (patch,) = extract_patches(image, [[0.0, 7.0]], (4, 4))
    assert patch.shape == (1, 4, 4)
    # origin (-2, 5): rows -2..1 (two outside), columns 5..8 (the last outside)
    np.testing.assert_array_equal(
        patch[0], [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]
    )
    (far,) = extract_patches(image, [[100.0, 100.0]], (4, 4))
    assert not far.any()


def test_patch_origins_floor_half_the_size() -> None:
    assert patch_origins([[5.0, 5.0, 5.0]], (5, 4, 3)).tolist() == [[3, 3, 4]]


@given(
    det=st.floats(0.0, 1.0),
    prob=st.floats(0.0, 1.0),
    more=st.floats(0.0, 0.5),
    weight=st.floats(0.05, 1.0),
)
def test_a_higher_score_from_either_stage_never_lowers_the_combined_score(
    det: float, prob: float, more: float, weight: float
) -> None:
    base = combine_scores(np.array([det], "f4"), np.array([prob], "f4"), weight)[0]
    up_det = combine_scores(np.array([min(det + more, 1.0)], "f4"), np.array([prob], "f4"), weight)
    up_prob = combine_scores(np.array([det], "f4"), np.array([min(prob + more, 1.0)], "f4"), weight)
    assert up_det[0] >= base
    assert up_prob[0] >= base
    assert 0.0 <= base <= 1.0


def test_weight_one_is_the_classifier_alone_and_a_half_the_geometric_mean() -> None:
    det, prob = np.array([0.9, 0.4], "f4"), np.array([0.1, 0.8], "f4")
    np.testing.assert_allclose(combine_scores(det, prob, 1.0), prob, rtol=1e-6)
    np.testing.assert_allclose(combine_scores(det, prob, 0.5), np.sqrt(det * prob), rtol=1e-6)


def _two_candidates() -> tuple[np.ndarray, Detections]:
    """A dark image with a bright blob under the *second* (lower-scoring) candidate."""
    image = np.zeros((40, 40, 20), dtype=np.float32)
    image[25:31, 25:31, 8:12] = 1.0
    boxes = np.array([[5, 5, 5, 11, 11, 11], [25, 25, 7, 31, 31, 13]], dtype=np.float32)
    return image, Detections(boxes, np.array([0.9, 0.6], "f4"), np.zeros(2, np.int64))


def _brightness_logit(patches: np.ndarray) -> np.ndarray:
    """A stand-in classifier with a known answer: bright patch -> high logit."""
    return (patches.reshape(len(patches), -1).mean(axis=1) * 40.0 - 5.0).astype(np.float32)


def test_rescore_reorders_by_the_combined_score_and_keeps_boxes_with_their_scores() -> None:
    image, dets = _two_candidates()
    out = rescore(image, dets, _brightness_logit, _spec((8, 8, 4), weight=0.5))
    np.testing.assert_array_equal(out.boxes, dets.boxes[[1, 0]])
    prob = 1 / (1 + np.exp(-_brightness_logit(extract_patches(image, [[28, 28, 10]], (8, 8, 4)))))
    np.testing.assert_allclose(out.scores[0], np.sqrt(0.6 * prob[0]), rtol=1e-5)
    assert out.scores[1] < out.scores[0]


def test_rescore_batches_many_candidates_in_order() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 16), dtype=np.float32)
    centres = rng.uniform(0, 64, (150, 3)).astype(np.float32)
    boxes = np.concatenate([centres - 2, centres + 2], axis=1)
    dets = Detections(boxes, np.linspace(0.9, 0.1, 150).astype("f4"), np.zeros(150, np.int64))
    out = rescore(image, dets, _brightness_logit, _spec((8, 8, 4)))
    patches = extract_patches(image, centres, (8, 8, 4))
    expected = combine_scores(dets.scores, 1 / (1 + np.exp(-_brightness_logit(patches))), 0.5)
    np.testing.assert_allclose(np.sort(out.scores)[::-1], np.sort(expected)[::-1], rtol=1e-6)
    assert list(out.scores) == sorted(out.scores, reverse=True)


def _card(rescoring: RescoringSpec | None) -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "m",
            "version": "1",
            "task": "lung_nodule",
            "intended_use": "tests",
            "network": {"block": "basic", "layers": [1, 1, 1, 1]},
            "detection": {},
            "preprocess": {},
            "weights": {"file": "model.onnx", "sha256": SHA},
            "rescoring": None if rescoring is None else rescoring.model_dump(),
        }
    )


def test_a_card_that_declares_rescoring_refuses_to_run_without_its_classifier() -> None:
    image, dets = _two_candidates()
    with pytest.raises(ModelUnavailable, match="declares a rescoring stage"):
        apply_rescoring(image, dets, _card(_spec((8, 8, 4))), None)


def test_a_card_without_rescoring_passes_detections_through() -> None:
    image, dets = _two_candidates()
    assert apply_rescoring(image, dets, _card(None), None) is dets


def test_card_refuses_a_patch_of_other_dimensionality_than_the_network() -> None:
    with pytest.raises(ValueError, match="patch_size must have 3 values"):
        _card(_spec((8, 8)))


def test_development_froc_counts_hits_by_the_recorded_distance() -> None:
    from training.detection.rescoring_eval import scans_with  # noqa: PLC0415 - training code

    data = {
        "seed": np.array([5, 5, 5, 6]),
        "is_gt": np.array([0, 0, 1, 0]),
        "dist_r": np.array([0.5, 3.0, 0.0, 99.0], "f4"),
        "gt_idx": np.array([0, 0, 0, -1]),
    }
    first, second = scans_with(data, np.array([0.9, 0.8, 0.7], "f4"))
    np.testing.assert_allclose(first.pred_scores, [0.9, 0.8], rtol=1e-6)
    assert first.hits.tolist() == [[True], [False]]
    np.testing.assert_allclose(second.pred_scores, [0.7], rtol=1e-6)
    assert second.hits.shape == (1, 0)
