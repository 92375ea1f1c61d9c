"""``--resume`` continues a run with exactly the state an uninterrupted run has at that step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_factories import TINY_3D
from training.detection.config import OptimizerConfig, TrainConfig
from training.detection.crops import Sample
from training.detection.train import train

pytestmark = pytest.mark.torch


def _pool() -> list[Sample]:
    rng = np.random.default_rng(7)
    return [
        Sample(
            rng.random((48, 48, 24), dtype=np.float32),
            np.array([[10, 12, 6, 18, 20, 12], [26, 20, 8, 34, 30, 14]], dtype=np.float32)[
                n : n + 1
            ],
        )
        for n in range(2)
    ]


def _cfg(max_steps: int) -> TrainConfig:
    return TrainConfig(
        network=TINY_3D,
        crop_size=(32, 32, 16),
        batch_size=2,
        checkpoint_every=2,
        threads=1,
        data_workers=1,
        max_steps=max_steps,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=2),
    )


def _losses(run: Path) -> list[tuple[int, float]]:
    """Return (step, loss) for every line of the run's log, in the order written."""
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def _network(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 4
    network: dict[str, torch.Tensor] = state["network"]
    return network


def test_resuming_at_a_checkpoint_gives_the_same_weights_and_losses_as_one_run(
    tmp_path: Path,
) -> None:
    pool = _pool()
    train(_cfg(4), pool, tmp_path / "a")
    train(_cfg(2), pool, tmp_path / "b")
    train(_cfg(4), pool, tmp_path / "b", resume=True)

    straight, resumed = _network(tmp_path / "a"), _network(tmp_path / "b")
    assert straight.keys() == resumed.keys()
    differ = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert differ == []
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [step for step, _ in b] == [1, 2, 3, 4]  # continued at step 3, did not start over
    assert a[2:] == b[2:]
    assert a[3][1] != a[2][1]  # training moved: the comparison is not between two constants
