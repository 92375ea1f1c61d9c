"""configs/policy.yaml: the shipped file loads, and `operating_point` is a threshold, not a typo."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triage.config import REPO_ROOT, load_policy


def _write(tmp_path: Path, lung: dict[str, object]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"version": 3, "lung_nodule": lung}))
    return path


def test_the_shipped_policy_flags_at_each_models_operating_point() -> None:
    policy = load_policy(REPO_ROOT / "configs" / "policy.yaml")
    assert policy.lung_nodule.min_score is None
    assert policy.fracture.min_score is None


def test_a_number_is_kept_and_an_omitted_threshold_means_the_operating_point(
    tmp_path: Path,
) -> None:
    policy = load_policy(_write(tmp_path, {"min_score": 0.4}))
    assert policy.lung_nodule.min_score == 0.4
    assert policy.fracture.min_score is None  # section omitted: the default


@pytest.mark.parametrize("bad", ["operating-point", 1.5, -0.1])
def test_a_threshold_that_is_neither_a_score_nor_operating_point_is_refused(
    tmp_path: Path, bad: object
) -> None:
    with pytest.raises(ValueError, match="min_score"):
        load_policy(_write(tmp_path, {"min_score": bad}))
