"""A synthetic sample cache refuses a config that would read samples rendered another way."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from training.detection.crops import Sample
from training.detection.pool import build_pool
from triage.inference.spec import PreprocessSpec

PREP = PreprocessSpec(target_spacing_mm=(2.0, 2.0, 4.0))


def make(seed: int, prep: PreprocessSpec) -> Sample:
    """A tiny 'phantom' whose voxels record the seed and the voxel size it was rendered at."""
    image = np.full((4, 4, 2), seed + prep.target_spacing_mm[0], dtype=np.float32)
    return Sample(image, np.array([[0, 0, 0, 2, 2, 1]], dtype=np.float32))


def _pool(
    cache: Path, prep: PreprocessSpec = PREP, generator: str = "ct-phantom/2"
) -> list[Sample]:
    return build_pool(make, "nodule", [0, 1], prep, cache=cache, generator=generator, workers=1)


def test_a_new_cache_records_what_rendered_it_and_is_reused(tmp_path: Path) -> None:
    first = _pool(tmp_path)
    manifest = json.loads((tmp_path / "nodule.pool.json").read_text())
    assert manifest["generator"] == "ct-phantom/2"
    assert manifest["preprocess"]["target_spacing_mm"] == [2.0, 2.0, 4.0]
    again = _pool(tmp_path)
    assert [float(s.image[0, 0, 0]) for s in again] == [float(s.image[0, 0, 0]) for s in first]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"prep": PreprocessSpec(target_spacing_mm=(1.0, 1.0, 2.0))}, "preprocess"),
        ({"generator": "ct-phantom/3"}, "generator"),
    ],
)
def test_a_cache_rendered_otherwise_is_refused_by_name(
    tmp_path: Path, change: dict[str, object], named: str
) -> None:
    _pool(tmp_path)
    with pytest.raises(ValueError, match=rf"another {named} .*new folder") as err:
        _pool(tmp_path, **change)  # type: ignore[arg-type]
    assert str(tmp_path) in str(err.value)


def test_samples_in_another_kind_do_not_share_a_manifest(tmp_path: Path) -> None:
    _pool(tmp_path)
    other = build_pool(make, "fracture", [0], PreprocessSpec(), cache=tmp_path, generator="dr/1")
    assert len(other) == 1
    assert (tmp_path / "fracture.pool.json").is_file()


def test_a_cache_made_before_manifests_is_adopted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _pool(tmp_path)
    (tmp_path / "nodule.pool.json").unlink()
    with caplog.at_level(logging.WARNING, logger="training.detection.pool"):
        _pool(tmp_path)
    assert "no manifest" in caplog.text
    with pytest.raises(ValueError, match="another generator"):
        _pool(tmp_path, generator="ct-phantom/3")
