"""Hard-positive mining: which targets count as missed, the file, and the crops drawn on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tests.model_factories import tiny_fracture_config
from training.detection import hard_negatives, hard_positives
from training.detection.config import TrainConfig
from training.detection.crops import Sample, random_crop
from training.detection.train import _batch, train

pytestmark = pytest.mark.torch


def test_a_target_is_missed_unless_a_confident_detection_centre_lies_inside_it() -> None:
    reference = np.array([[10, 10, 20, 20], [50, 50, 60, 60], [80, 80, 90, 90]], dtype=np.float32)
    boxes = np.array(
        [
            [12, 12, 18, 18],  # centre (15, 15) in box 0, confident -> box 0 found
            [52, 52, 58, 58],  # centre (55, 55) in box 1 but below the threshold
            [88, 88, 100, 100],  # centre (94, 94): overlaps box 2, centre outside -> no hit
        ],
        dtype=np.float32,
    )
    scores = np.array([0.9, 0.4, 0.95], dtype=np.float32)
    got = hard_positives.missed_boxes(boxes, scores, reference, below=0.5)
    np.testing.assert_array_equal(got, [1, 2])
    np.testing.assert_array_equal(
        hard_positives.missed_boxes(boxes, scores, reference, below=0.3), [2]
    )
    none = hard_positives.missed_boxes(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), reference, below=0.5
    )
    np.testing.assert_array_equal(none, [0, 1, 2])
    empty = hard_positives.missed_boxes(boxes, scores, np.zeros((0, 4), np.float32), below=0.5)
    assert empty.shape == (0,)


def test_missed_boxes_round_trip_and_refuse_another_pool(tmp_path: Path) -> None:
    pool = [
        Sample(np.zeros((8, 8), np.float32), np.array([[0, 0, 2, 2], [4, 4, 6, 6]], np.float32)),
        Sample(np.zeros((8, 8), np.float32), np.zeros((0, 4), np.float32)),
    ]
    path = tmp_path / "hp.npz"
    hard_positives.save(path, [np.array([1]), np.zeros(0, np.int64)], meta={"model": "m"})
    back = hard_positives.load(path, pool)
    np.testing.assert_array_equal(back[0], [1])
    assert back[1].shape == (0,)
    with pytest.raises(ValueError, match="mined on 2 images but the training pool has 3"):
        hard_positives.load(path, [*pool, pool[1]])
    with pytest.raises(ValueError, match="names box 1 but has 1"):
        hard_positives.load(path, [Sample(pool[0].image, pool[0].boxes[:1]), pool[1]])
    attached = hard_positives.attach(hard_negatives.attach(pool, [np.ones((1, 2))] * 2), back)
    assert attached[0].hard.shape == (1, 2)  # attaching one kind keeps the other
    np.testing.assert_array_equal(attached[0].missed, [1])


def test_a_chosen_box_index_centres_the_positive_crop_on_that_box() -> None:
    image = np.zeros((300, 300), np.float32)
    image[250, 250] = 1.0  # marks box 1
    boxes = np.array([[20, 20, 30, 30], [245, 245, 255, 255]], np.float32)
    sample = Sample(image, boxes)
    rng = np.random.default_rng(0)
    chosen = [random_crop(sample, (64, 64), rng, positive=True, box_index=1) for _ in range(40)]
    assert min(c.image.max() for c in chosen) == 1.0
    assert all(len(c.boxes) == 1 for c in chosen)
    anyone = [random_crop(sample, (64, 64), rng, positive=True).image.max() for _ in range(40)]
    assert min(anyone) == 0.0  # a random box is often box 0, far from the mark: the test can fail


def _tiny_cfg(**extra: object) -> TrainConfig:
    return tiny_fracture_config(pos_fraction=1.0, **extra)


def test_config_needs_a_file_for_hard_positives() -> None:
    with pytest.raises(ValidationError, match="needs hard_positives"):
        _tiny_cfg(hard_positive_fraction=0.5)


def test_training_batches_centre_positives_on_the_missed_boxes(tmp_path: Path) -> None:
    easy = np.zeros((256, 256), np.float32)
    hard = np.zeros((256, 256), np.float32)
    hard[220, 220] = 1.0  # the missed target, marked
    pool = [
        Sample(easy, np.array([[10, 10, 30, 30]], np.float32)),
        Sample(hard, np.array([[20, 20, 40, 40], [210, 210, 230, 230]], np.float32)),
    ]
    hp = tmp_path / "hp.npz"
    hard_positives.save(hp, [np.zeros(0, np.int64), np.array([1])], meta={})
    cfg = _tiny_cfg(hard_positives=hp, hard_positive_fraction=1.0)
    attached = hard_positives.attach(pool, hard_positives.load(hp, pool))
    images, targets = _batch(attached, cfg, np.random.default_rng(1))
    # every crop is centred near the missed box of image 1, so it holds the mark and that box
    assert all(float(img.max()) > 0.6 for img in images)
    assert all(len(t["box"]) >= 1 for t in targets)
    plain, _ = _batch(attached, _tiny_cfg(), np.random.default_rng(1))
    assert min(float(img.max()) for img in plain) < 0.5  # without the file, many crops miss it
    ckpt = train(cfg, pool, tmp_path / "run")
    assert ckpt.is_file()  # train() attached the missed boxes from the file and ran
