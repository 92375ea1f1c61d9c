"""Training extras: AMP only on CUDA (CPU results unchanged), TensorBoard scalars or a note."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_factories import TINY_3D
from training.detection import scalars
from training.detection.config import OptimizerConfig, TrainConfig
from training.detection.crops import Sample
from training.detection.train import train

pytestmark = pytest.mark.torch


def _pool() -> list[Sample]:
    rng = np.random.default_rng(3)
    box = np.array([[10, 12, 6, 18, 20, 12]], dtype=np.float32)
    return [Sample(rng.random((40, 40, 20), dtype=np.float32), box)]


def _cfg(**kw: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "network": TINY_3D,
            "crop_size": (32, 32, 16),
            "batch_size": 1,
            "checkpoint_every": 2,
            "threads": 1,
            "data_workers": 1,
            "max_steps": 2,
            "optimizer": OptimizerConfig(lr=1e-3, warmup_steps=1),
            **kw,
        }
    )


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert "scaler" not in state  # no loss scaler on the CPU
    network: dict[str, torch.Tensor] = state["network"]
    return network


def test_amp_is_off_on_the_cpu_says_so_and_changes_no_weight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="training.detection.train"):
        train(_cfg(amp=True), _pool(), tmp_path / "amp")
    assert "amp is off on cpu" in caplog.text
    train(_cfg(amp=False), _pool(), tmp_path / "fp32")
    on, off = _weights(tmp_path / "amp"), _weights(tmp_path / "fp32")
    assert [k for k in on if not torch.equal(on[k], off[k])] == []


def test_scalars_are_written_as_tensorboard_events(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import (  # noqa: PLC0415
        EventAccumulator,
    )

    train(_cfg(), _pool(), tmp_path / "run", log_dir=tmp_path / "run" / "tb")
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss/total", "loss/cls", "loss/box_reg", "lr", "time/step_s"} <= tags
    assert [e.step for e in acc.Scalars("loss/total")] == [1, 2]
    assert acc.Scalars("lr")[0].value == pytest.approx(1e-3)


def test_without_tensorboard_training_goes_on_and_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(scalars, "tensorboard_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="training.detection.scalars"):
        train(_cfg(), _pool(), tmp_path / "run", log_dir=tmp_path / "run" / "tb")
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert not (tmp_path / "run" / "tb").exists()
    notes = [r for r in caplog.records if "TensorBoard is not installed" in r.getMessage()]
    assert len(notes) == 1
    assert "triage[train]" in notes[0].getMessage()


def test_cuda_without_a_gpu_is_refused_with_the_fix(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device must be cpu or auto on a machine without CUDA"):
        train(_cfg(device="cuda"), _pool(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_cuda_trains_and_checkpoints_the_loss_scaler(tmp_path: Path) -> None:
    train(_cfg(device="cuda"), _pool(), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 2
    assert "scale" in state["scaler"]
    train(_cfg(device="cuda", max_steps=3), _pool(), tmp_path / "run", resume=True)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 3
