"""Synthetic training seeds: ``train_seeds`` plus ``extra_seeds`` ranges, never evaluation seeds.

``extra_seeds`` exists to add phantoms of one kind (chest radiographs are the seeds 3 divides)
without re-rendering a whole new range; the pool, the card's training-data block and the guard
against evaluation seeds must all see the same list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from training.detection import fracture_data
from training.detection.config import TRAIN_SEED_LIMIT, SyntheticData, TrainConfig
from training.detection.evaluate import EVAL_SEED_OFFSET
from training.detection.run_demo import build_pool_for
from training.detection.sources import data_manifest
from triage.synth.dr_phantom import GENERATOR_VERSION

DR_PREP = {
    "target_spacing_mm": [1.0, 1.0],
    "axcodes": "RA",
    "intensity": {"mode": "percentile", "low": 1.0, "high": 99.0},
}


def test_seeds_lists_the_range_then_each_extra_range_in_order() -> None:
    data = SyntheticData(train_seeds=(0, 3), extra_seeds=((30, 39, 3), (100, 102, 1)))
    assert data.seeds() == [0, 1, 2, 30, 33, 36, 100, 101]
    assert SyntheticData(train_seeds=(5, 7)).seeds() == [5, 6]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (((TRAIN_SEED_LIMIT - 3, TRAIN_SEED_LIMIT + 3, 3),), "evaluation sets"),
        (((10, 20, 0),), "step >= 1"),
        (((20, 10, 1),), "start < stop"),
        (((3, 9, 3),), "overlap"),  # 3 and 6 are already in train_seeds [0, 8)
        (((9, 12, 1), (11, 14, 1)), "overlap"),
    ],
)
def test_seed_ranges_that_reach_evaluation_seeds_or_overlap_are_refused(
    extra: tuple[tuple[int, int, int], ...], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticData(train_seeds=(0, 8), extra_seeds=extra)


def test_train_seeds_themselves_may_not_reach_the_evaluation_sets() -> None:
    assert EVAL_SEED_OFFSET == TRAIN_SEED_LIMIT
    with pytest.raises(ValidationError, match="evaluation sets"):
        SyntheticData(train_seeds=(0, EVAL_SEED_OFFSET + 1))


def test_pool_renders_the_extra_seeds_and_the_card_records_them(tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate(
        {
            "task": "fracture",
            "model_name": "tiny-fracture",
            "preprocess": DR_PREP,
            "data": {
                "kind": "synthetic",
                "train_seeds": [1, 2],
                "extra_seeds": [[3, 7, 3]],
                "cache_dir": str(tmp_path),
            },
            "crop_size": [64, 64],
            "data_workers": 1,
        }
    )
    pool = build_pool_for(cfg)
    assert len(pool) == 3
    for sample, seed in zip(pool, [1, 3, 6], strict=True):
        direct = fracture_data.phantom_sample(seed, cfg.preprocess)
        assert sample.image.shape == direct.image.shape
        np.testing.assert_allclose(sample.boxes, direct.boxes)
    assert sorted(p.name for p in tmp_path.glob("fracture_*.npz")) == [
        "fracture_1.npz",
        "fracture_3.npz",
        "fracture_6.npz",
    ]
    block = data_manifest(cfg, Path("exp.yaml"), generator=GENERATOR_VERSION)
    assert block["train_seeds"] == [1, 2]
    assert block["extra_seeds"] == [[3, 7, 3]]
    plain = cfg.model_copy(update={"data": SyntheticData(train_seeds=(1, 2))})
    assert "extra_seeds" not in data_manifest(plain, Path("exp.yaml"), generator=GENERATOR_VERSION)
