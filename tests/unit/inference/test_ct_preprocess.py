"""CT preprocessing: ``anti_alias`` reaches the resampler (off by default); task-only switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from training.detection.config import TrainConfig
from triage.imaging.volume import Volume, affine_from_geometry
from triage.inference import lung_nodule
from triage.inference.card import ModelCard
from triage.inference.spec import IntensitySpec, PreprocessSpec


def _thin_slice_noise(seed: int = 0) -> Volume:
    """Lung-like -800 HU with 40 HU white noise on 0.5 mm slices (a thin reconstruction)."""
    rng = np.random.default_rng(seed)
    values = (-800.0 + 40.0 * rng.normal(size=(120, 48, 48))).astype(np.float32)
    return Volume(values, affine_from_geometry((0.0, 0.0, 0.0), np.eye(3), (0.5, 0.5, 0.5)))


def _prep(anti_alias: bool) -> PreprocessSpec:
    return PreprocessSpec(
        target_spacing_mm=(1.0, 1.0, 2.0),
        axcodes="LPS",
        intensity=IntensitySpec(mode="window", low=-1024.0, high=300.0),
        anti_alias=anti_alias,
    )


def test_cards_without_the_field_keep_plain_linear_resampling() -> None:
    assert PreprocessSpec().anti_alias is False
    volume = _thin_slice_noise()
    default = lung_nodule.preprocess(volume, _prep(False))
    explicit = lung_nodule.preprocess(
        volume,
        PreprocessSpec(
            target_spacing_mm=(1.0, 1.0, 2.0), axcodes="LPS", intensity=_prep(False).intensity
        ),
    )
    np.testing.assert_array_equal(default.image, explicit.image)


def test_anti_alias_card_lowers_thin_slice_noise_at_the_same_level_and_geometry() -> None:
    volume = _thin_slice_noise()
    plain = lung_nodule.preprocess(volume, _prep(False))
    smoothed = lung_nodule.preprocess(volume, _prep(True))
    assert plain.image.shape == smoothed.image.shape == (24, 24, 30)
    np.testing.assert_allclose(plain.affine_lps, smoothed.affine_lps)
    assert float(smoothed.image.std()) < 0.5 * float(plain.image.std())
    assert abs(float(smoothed.image.mean()) - float(plain.image.mean())) < 0.005


def _card_dict(task: str, preprocess: dict[str, object]) -> dict[str, object]:
    card = yaml.safe_load(
        (Path(__file__).parents[3] / "models" / "lung_nodule_det" / "model.yaml").read_text()
    )
    card["task"] = task
    card["preprocess"] = preprocess
    return dict(card)


@pytest.mark.parametrize(
    ("task", "preprocess", "field"),
    [
        (
            "lung_nodule",
            {"intensity": {"mode": "window", "local_sigma_mm": 4.0}},
            "local_sigma_mm applies to radiographs",
        ),
        (
            "fracture",
            {"target_spacing_mm": [0.4, 0.4], "anti_alias": True},
            "anti_alias applies to CT",
        ),
    ],
)
def test_a_switch_the_task_would_ignore_is_refused_by_card_and_experiment(
    task: str, preprocess: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        ModelCard.model_validate(_card_dict(task, preprocess))
    with pytest.raises(ValidationError, match=field):
        TrainConfig.model_validate({"task": task, "preprocess": preprocess})


def test_each_task_accepts_its_own_switch() -> None:
    ct = {"target_spacing_mm": [1.0, 1.0, 2.0], "anti_alias": True}
    assert ModelCard.model_validate(_card_dict("lung_nodule", ct)).preprocess.anti_alias
    dr = {
        "target_spacing_mm": [0.4, 0.4],
        "intensity": {"mode": "percentile", "low": 0.5, "high": 99.5, "local_sigma_mm": 4.0},
    }
    card = ModelCard.model_validate(_card_dict("fracture", dr))
    assert card.preprocess.intensity.local_sigma_mm == 4.0
