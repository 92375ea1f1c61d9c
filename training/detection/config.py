"""Training experiment config: plain YAML validated by pydantic (no code in configs, STYLE H17)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from triage.inference.spec import DetectionSpec, NetworkSpec, PreprocessSpec


class OptimizerConfig(BaseModel):
    """Optimiser and schedule: linear warm-up then step decay at the milestones."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1


class SyntheticData(BaseModel):
    """Phantom seeds [start, stop) for training; validation seeds must not overlap."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["synthetic"] = "synthetic"
    train_seeds: tuple[int, int] = (0, 120)
    cache_dir: Path = Path("work/cache")


class TrainConfig(BaseModel):
    """One experiment: what to build, on which data, for how long."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    task: Literal["lung_nodule", "fracture"] = "lung_nodule"
    model_name: str = "lung_nodule_det"
    network: NetworkSpec = NetworkSpec()
    detection: DetectionSpec = DetectionSpec()
    preprocess: PreprocessSpec = PreprocessSpec()
    data: SyntheticData = SyntheticData()
    crop_size: tuple[int, ...] = (96, 96, 48)
    batch_size: int = Field(4, ge=1)
    pos_fraction: float = Field(0.6, ge=0.0, le=1.0)
    optimizer: OptimizerConfig = OptimizerConfig()
    max_steps: int = Field(2000, ge=1)
    max_minutes: float = Field(60.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0
    threads: int = Field(2, ge=1)
    data_workers: int = Field(2, ge=1)


def load_config(path: Path) -> TrainConfig:
    """Read and validate an experiment YAML."""
    return TrainConfig.model_validate(yaml.safe_load(path.read_text()))
