"""Hard-negative mining: which detections count as false positives, the file, and the crops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from tests.model_factories import DET_2D, TINY_2D, tiny_fracture_config, write_tiny_model
from training.detection import hard_negatives, hard_positives
from training.detection.config import TrainConfig, load_config
from training.detection.crops import Sample, random_crop
from training.detection.sources import build_samples
from training.detection.train import _batch, train

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[3]


def test_false_positives_are_confident_detections_outside_every_grown_reference_box() -> None:
    boxes = np.array(
        [
            [10, 10, 20, 20],  # centre (15, 15): inside the reference box -> a true positive
            [20, 14, 28, 18],  # centre (24, 16): outside the box but within half its size
            [60, 60, 70, 70],  # centre (65, 65): far away, confident -> FP
            [80, 80, 84, 84],  # far away but below min_score
            [40, 60, 50, 70],  # centre (45, 65): FP with a lower score than (65, 65)
        ],
        dtype=np.float32,
    )
    scores = np.array([0.99, 0.9, 0.8, 0.1, 0.5], dtype=np.float32)
    reference = np.array([[10, 10, 20, 20]], dtype=np.float32)
    got = hard_negatives.false_positive_centres(
        boxes, scores, reference, min_score=0.3, max_count=10
    )
    np.testing.assert_allclose(got, [[65, 65], [45, 65]])
    top = hard_negatives.false_positive_centres(
        boxes, scores, reference, min_score=0.3, max_count=1
    )
    np.testing.assert_allclose(top, [[65, 65]])
    none = hard_negatives.false_positive_centres(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), reference, min_score=0.3, max_count=5
    )
    assert none.shape == (0, 2)


def test_mined_centres_round_trip_and_refuse_another_pool(tmp_path: Path) -> None:
    centres = [np.array([[1.0, 2.0]], np.float32), np.zeros((0, 2), np.float32)]
    path = tmp_path / "hn.npz"
    hard_negatives.save(path, centres, meta={"model": "m"})
    back = hard_negatives.load(path, 2)
    np.testing.assert_array_equal(back[0], centres[0])
    assert back[1].shape == (0, 2)
    with pytest.raises(ValueError, match="mined on 2 images but the training pool has 3"):
        hard_negatives.load(path, 3)


def test_hard_crops_are_centred_near_a_mined_centre() -> None:
    image = np.zeros((200, 200), np.float32)
    image[150, 40] = 1.0  # the mined spot, marked so a crop shows whether it holds it
    sample = Sample(image, np.zeros((0, 4), np.float32), np.array([[150.0, 40.0]], np.float32))
    rng = np.random.default_rng(0)
    hard = [random_crop(sample, (64, 64), rng, positive=False, hard=True) for _ in range(50)]
    # start = centre - 32 +- 16, clipped to the image: the spot is always inside
    assert {c.image.shape for c in hard} == {(64, 64)}
    assert min(c.image.max() for c in hard) == 1.0
    plain = [random_crop(sample, (64, 64), rng, positive=False).image.max() for _ in range(50)]
    assert min(plain) == 0.0  # a plain negative crop often misses it: the test can fail


def _tiny_cfg(**extra: object) -> TrainConfig:
    return tiny_fracture_config(pos_fraction=0.0, **extra)


def test_config_needs_a_file_and_fractions_that_add_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="needs hard_negatives"):
        _tiny_cfg(hard_negative_fraction=0.3)
    with pytest.raises(ValidationError, match="at most 1"):
        TrainConfig(pos_fraction=0.8, hard_negative_fraction=0.3, hard_negatives=tmp_path / "x")


def test_training_batches_use_the_mined_centres(tmp_path: Path) -> None:
    image = np.zeros((256, 256), np.float32)
    image[200, 30] = 1.0
    pool = [
        Sample(image, np.zeros((0, 4), np.float32), np.array([[200.0, 30.0]], np.float32)),
        Sample(np.zeros((256, 256), np.float32), np.zeros((0, 4), np.float32)),
    ]
    hn = tmp_path / "hn.npz"
    hard_negatives.save(hn, [s.hard for s in pool], meta={})
    cfg = _tiny_cfg(hard_negatives=hn, hard_negative_fraction=1.0)
    images, _ = _batch(pool, cfg, np.random.default_rng(1))
    # every crop is a hard one, taken from the sample that has a mined centre, which it contains
    # (augmentation scales the spot by 0.85-1.15 and adds at most ~0.15 of noise)
    assert all(float(img.max()) > 0.6 for img in images)
    plain, _ = _batch(pool, _tiny_cfg(), np.random.default_rng(1))
    assert min(float(img.max()) for img in plain) < 0.5  # without mining, crops miss the spot
    ckpt = train(cfg, [Sample(s.image, s.boxes) for s in pool], tmp_path / "run")
    assert ckpt.is_file()  # train() attached the mined centres from the file and ran


def test_mining_command_runs_an_exported_model_over_the_training_pool(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "model", task="fracture", seed=3, bias=2.0)
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "fracture",
                "model_name": "tiny-fracture",
                "network": json.loads(TINY_2D.model_dump_json()),
                "detection": json.loads(DET_2D.model_dump_json()),
                "preprocess": {
                    "target_spacing_mm": [1.0, 1.0],
                    "axcodes": "RA",
                    "intensity": {"mode": "percentile", "low": 1.0, "high": 99.0},
                },
                "data": {"kind": "synthetic", "train_seeds": [1, 3], "cache_dir": str(tmp_path)},
                "crop_size": [64, 64],
                "data_workers": 1,
            }
        )
    )
    out = tmp_path / "hn.npz"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.detection.hard_negatives",
            "--config",
            str(config),
            "--model-dir",
            str(tmp_path / "model"),
            "--out",
            str(out),
            "--min-score",
            "0.02",
            "--max-per-image",
            "5",
            "--missed-out",
            str(tmp_path / "hp.npz"),
            "--missed-below",
            "0.99",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    centres = hard_negatives.load(out, 2)
    # a random network with a raised bias (scores ~0.07) fires everywhere: both radiographs have
    # false positives, capped at --max-per-image
    assert [len(c) for c in centres] == [5, 5]
    assert "false-positive centres on 2 images" in done.stdout
    # nothing scores 0.99, so every reference fracture of the two radiographs is a missed target
    pool = build_samples(load_config(config))
    missed = hard_positives.load(tmp_path / "hp.npz", pool)
    assert [len(m) for m in missed] == [len(s.boxes) for s in pool]
    assert f"{sum(len(s.boxes) for s in pool)} of" in done.stdout
