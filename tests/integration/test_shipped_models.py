"""The shipped demo models: valid cards, verified weights, and the real LIDC-IDRI-0001 nodule found.

These run the committed ONNX weights through the serving path (no torch), as `triage run` does.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from triage.cli import build_engine
from triage.config import REPO_ROOT, Settings
from triage.core.findings import NoduleFinding
from triage.core.priority import Priority
from triage.dicom.reader import scan_folder
from triage.dicom.selection import Task
from triage.inference.card import load_card
from triage.pipeline import analyse_study

pytestmark = pytest.mark.integration
MODELS = REPO_ROOT / "models"


@pytest.mark.parametrize("name", ["lung_nodule_det", "fracture_det"])
def test_shipped_model_card_is_valid_and_its_weights_verify(name: str) -> None:
    card = load_card(MODELS / name)
    path = card.verify_weights(MODELS / name)
    assert path.stat().st_size <= 25 * 1024 * 1024
    assert "NOT FOR DIAGNOSTIC USE" in card.intended_use
    assert "synthetic" in card.intended_use
    assert card.metrics["synthetic_fresh_set"]
    assert card.operating_point_score is not None  # what the default policy flags at


def test_lidc_idri_0001_nodule_is_reported_urgent_by_the_shipped_model(
    lidc_dir: Path, lidc_consensus: Path
) -> None:
    engine = build_engine(Settings(models_dir=MODELS))
    (study,) = scan_folder(lidc_dir).studies
    result = analyse_study(study, engine, now=datetime(2026, 1, 1, tzinfo=UTC))
    with lidc_consensus.open() as f:
        row = next(csv.DictReader(f))
    center = np.array(
        [float(row["center_x_mm"]), float(row["center_y_mm"]), float(row["center_z_mm"])]
    )
    radius = float(row["max_inplane_extent_mm_mean"]) / 2
    hits = [
        f
        for f in result.findings
        if isinstance(f, NoduleFinding)
        and np.linalg.norm(np.subtract(f.center_lps_mm, center)) <= radius
    ]
    assert hits, (
        f"no reported finding within {radius:.1f} mm of the consensus nodule: {result.findings}"
    )
    assert result.decision.priority == Priority.URGENT
    assert any("nodule" in r for r in result.decision.reasons)
    # The default policy reports findings from the card's 1-FP operating point up, not from 0.5.
    threshold = engine.models[Task.LUNG_NODULE].card.operating_point_score
    assert threshold is not None
    assert threshold > 0.5
    assert all(f.score >= threshold for f in result.findings), [f.score for f in result.findings]
