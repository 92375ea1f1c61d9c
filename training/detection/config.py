"""Training experiment config: plain YAML validated by pydantic (no code in configs, STYLE H17)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from triage.inference.spec import (
    DetectionSpec,
    NetworkSpec,
    PreprocessSpec,
    check_preprocess_for_task,
)


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


TRAIN_SEED_LIMIT = 1_000_000
"""Training phantoms use seeds below this; evaluation sets start here (never trained on)."""


class SyntheticData(BaseModel):
    """Phantom seeds for training: ``train_seeds`` [start, stop) plus any ``extra_seeds`` ranges.

    ``extra_seeds`` are ``[start, stop, step]`` ranges, there to add phantoms of one kind without
    re-rendering a whole new range: fracture phantoms are chest radiographs when 3 divides the
    seed, so ``[3000, 5700, 3]`` adds 900 chest images and no limbs. Every seed must lie below
    :data:`TRAIN_SEED_LIMIT`, where the evaluation sets begin.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["synthetic"] = "synthetic"
    train_seeds: tuple[int, int] = (0, 120)
    extra_seeds: tuple[tuple[int, int, int], ...] = ()
    cache_dir: Path = Path("work/cache")

    @model_validator(mode="after")
    def _seeds_are_training_seeds(self) -> SyntheticData:
        ranges = [(*self.train_seeds, 1), *self.extra_seeds]
        for start, stop, step in ranges:
            if step < 1 or not 0 <= start < stop <= TRAIN_SEED_LIMIT:
                raise ValueError(
                    f"seed range [{start}, {stop}, {step}] must satisfy 0 <= start < stop <= "
                    f"{TRAIN_SEED_LIMIT} with step >= 1: seeds from {TRAIN_SEED_LIMIT} on are "
                    "the evaluation sets, never trained on"
                )
        seeds = self.seeds()
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                "data.extra_seeds overlap train_seeds or each other: each phantom would be "
                "trained on twice as often; make the ranges disjoint"
            )
        return self

    def seeds(self) -> list[int]:
        """Return every training seed, ``train_seeds`` first, then each extra range in order."""
        out = list(range(*self.train_seeds))
        for start, stop, step in self.extra_seeds:
            out.extend(range(start, stop, step))
        return out


class DatalistData(BaseModel):
    """A MONAI / LUNA16 detection datalist JSON: ``{"training": [{"image", "box", "label"}], ...}``.

    CT (``task: lung_nodule``): boxes are ``cccwhd`` in world millimetres of the patient **LPS**
    frame, the DICOM / ITK frame that ``triage synth ct`` writes and that MONAI's LUNA16 datalists
    use (the bundle reads with ITK, converts the affine back to LPS and only then maps boxes to
    voxels, ``AffineBoxToImageCoordinated(affine_lps_to_ras=True)``). ``image`` is a NIfTI / MHD /
    NRRD file (read with SimpleITK, whose world frame is LPS) or a folder holding one CT series.
    Radiographs (``task: fracture``): ``image`` is one CR/DX DICOM file and boxes are pixel
    ``xyxy`` edges (x = column, y = row, x1 and y1 exclusive), as ``triage synth dr`` writes them.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["datalist"]
    datalist: Path
    base_dir: Path | None = None  # image paths are relative to this; default: the JSON's folder
    section: str = Field("training", min_length=1)
    cache_dir: Path = Path("work/cache")


class DicomCsvData(BaseModel):
    """A folder of DICOM CT studies and a LUNA16 ``annotations.csv`` (lung nodules only).

    The CSV has ``seriesuid,coordX,coordY,coordZ,diameter_mm`` with centres in world (patient LPS)
    millimetres, one row per nodule. Every CT series in ``dicom_dir`` is a training image; a series
    without rows is a negative.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["dicom_csv"]
    dicom_dir: Path
    annotations_csv: Path
    cache_dir: Path = Path("work/cache")


def _data_kind(value: object) -> str:
    """Return the ``kind`` of a data section; a section without one is ``synthetic`` (as before)."""
    if isinstance(value, dict):
        return str(value.get("kind", "synthetic"))
    return str(getattr(value, "kind", "synthetic"))


DataConfig = Annotated[
    Annotated[SyntheticData, Tag("synthetic")]
    | Annotated[DatalistData, Tag("datalist")]
    | Annotated[DicomCsvData, Tag("dicom_csv")],
    Discriminator(_data_kind),
]


class TrainConfig(BaseModel):
    """One experiment: what to build, on which data, for how long."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    task: Literal["lung_nodule", "fracture"] = "lung_nodule"
    model_name: str = "lung_nodule_det"
    network: NetworkSpec = NetworkSpec()
    detection: DetectionSpec = DetectionSpec()
    preprocess: PreprocessSpec = PreprocessSpec()
    data: DataConfig = SyntheticData()
    crop_size: tuple[int, ...] = (96, 96, 48)
    batch_size: int = Field(4, ge=1)
    pos_fraction: float = Field(0.6, ge=0.0, le=1.0)
    # crops centred on a mined false positive (python -m training.detection.hard_negatives)
    hard_negatives: Path | None = None
    hard_negative_fraction: float = Field(0.0, ge=0.0, le=1.0)
    # share of the positive crops centred on a target a trained model missed (hard_positives)
    hard_positives: Path | None = None
    hard_positive_fraction: float = Field(0.0, ge=0.0, le=1.0)
    optimizer: OptimizerConfig = OptimizerConfig()
    max_steps: int = Field(2000, ge=1)
    max_minutes: float = Field(60.0, gt=0)
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0
    threads: int = Field(2, ge=1)
    data_workers: int = Field(2, ge=1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # auto: CUDA when available
    amp: bool = True  # mixed precision (autocast + GradScaler), on CUDA only; CPU runs in float32
    log_dir: Path | None = None  # TensorBoard events; `triage train` defaults to <out>/tb

    @model_validator(mode="after")
    def _hard_negatives_need_a_file(self) -> TrainConfig:
        if self.hard_negative_fraction and self.hard_negatives is None:
            raise ValueError(
                "hard_negative_fraction needs hard_negatives: the .npz written by "
                "python -m training.detection.hard_negatives"
            )
        if self.hard_positive_fraction and self.hard_positives is None:
            raise ValueError(
                "hard_positive_fraction needs hard_positives: the .npz written by "
                "python -m training.detection.hard_negatives --missed-out"
            )
        check_preprocess_for_task(self.task, self.preprocess)
        if self.pos_fraction + self.hard_negative_fraction > 1.0:
            raise ValueError(
                "pos_fraction + hard_negative_fraction must be at most 1, got "
                f"{self.pos_fraction + self.hard_negative_fraction:g}"
            )
        return self


def load_config(path: Path) -> TrainConfig:
    """Read and validate an experiment YAML."""
    return TrainConfig.model_validate(yaml.safe_load(path.read_text()))
