"""ModelCard.operating_point_score: read from the metrics the ship step writes, None otherwise."""

from __future__ import annotations

import pytest

from triage.config import REPO_ROOT
from triage.inference.card import ModelCard, load_card


def _with_metrics(metrics: dict[str, object]) -> ModelCard:
    card = load_card(REPO_ROOT / "models" / "fracture_det")
    return card.model_copy(update={"metrics": metrics})


def test_the_operating_point_is_the_recorded_1fp_threshold() -> None:
    card = _with_metrics(
        {"synthetic_fresh_set": {"operating_point_1fp": {"score_threshold": 0.6125}}}
    )
    assert card.operating_point_score == 0.6125


@pytest.mark.parametrize(
    "metrics",
    [
        {},
        {"bundle_reported": {"mAP": 0.85}},
        {"synthetic_fresh_set": {"operating_point_1fp": {"score_threshold": None}}},
        {"synthetic_fresh_set": {"operating_point_1fp": {"score_threshold": 3.0}}},
        {"synthetic_fresh_set": "see evaluation.json"},
    ],
)
def test_a_card_without_a_usable_operating_point_says_none(metrics: dict[str, object]) -> None:
    assert _with_metrics(metrics).operating_point_score is None
