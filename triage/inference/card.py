"""Model cards: a model's I/O contract, provenance and intended use, enforced at load (STYLE H18).

A card is ``models/<name>/model.yaml``. The runtime refuses to load weights whose sha256 differs
from the card, and the pipeline follows the card's voxel size, window and detection settings — never
its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from triage.core.errors import ModelUnavailable
from triage.inference.spec import (
    DetectionSpec,
    NetworkSpec,
    PreprocessSpec,
    check_preprocess_for_task,
)


class WeightsRef(BaseModel):
    """Where the weights are, their checksum and where they came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: Literal["onnx", "torch_state_dict"] = "onnx"
    source: str = ""


class RescoringSpec(BaseModel):
    """A second stage that re-scores every candidate from an image patch around its centre.

    LUNA16's two-stage design (candidate detection, then false-positive reduction): the detector's
    score comes from a small receptive field, so a vessel crossing or a rib overlap can score like
    a nodule or a fracture; a classifier that sees the whole neighbourhood of the candidate tells
    them apart. The final score is ``detection ** (1 - weight) * probability ** weight``, so a
    candidate needs both stages to agree. The patch is ``patch_size`` network-input voxels
    (i, j[, k]) centred on the box centre, zero outside the image
    (:func:`triage.inference.rescoring.extract_patches`); the ONNX file maps ``input_name``
    ``(N, 1, *patch_size)`` to ``output_name`` logits ``(N, 1)``. It always runs in ONNX Runtime
    beside the detector, whatever runtime serves the detector (it is small and per-candidate).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    patch_size: tuple[int, ...]
    weight: float = Field(0.5, gt=0.0, le=1.0)
    input_name: str = "patch"
    output_name: str = "logit"
    source: str = ""

    @model_validator(mode="after")
    def _patch_positive(self) -> RescoringSpec:
        if not self.patch_size or any(n < 1 for n in self.patch_size):
            raise ValueError(f"rescoring.patch_size must be positive sizes, got {self.patch_size}")
        return self


class IOContract(BaseModel):
    """Tensor names and layout the runtime checks against the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input_name: str = "image"
    input_layout: str = "NCHWD (spatial axes i, j, k; MONAI convention)"
    dtype: Literal["float32"] = "float32"
    output_names: tuple[str, ...] = ("cls_0", "cls_1", "cls_2", "box_0", "box_1", "box_2")


OPERATING_POINT_KEYS = ("synthetic_fresh_set", "operating_point_1fp", "score_threshold")
"""Where in a card's ``metrics`` the ship step records the score at 1 false positive per scan."""


class ChangelogEntry(BaseModel):
    """One released version and what changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    date: str
    change: str


class ModelCard(BaseModel):
    """Everything needed to run a model and to judge what its output means."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: str
    task: Literal["lung_nodule", "fracture"]
    intended_use: str
    network: NetworkSpec
    detection: DetectionSpec
    preprocess: PreprocessSpec
    io: IOContract = IOContract()
    weights: WeightsRef
    rescoring: RescoringSpec | None = None
    training_data: dict[str, object] = Field(default_factory=dict)
    metrics: dict[str, object] = Field(default_factory=dict)
    citations: tuple[str, ...] = ()
    changelog: tuple[ChangelogEntry, ...] = ()

    @model_validator(mode="after")
    def _preprocess_fits_task(self) -> ModelCard:
        check_preprocess_for_task(self.task, self.preprocess)
        return self

    @model_validator(mode="after")
    def _rescoring_fits_network(self) -> ModelCard:
        if self.rescoring and len(self.rescoring.patch_size) != self.network.spatial_dims:
            raise ValueError(
                f"rescoring.patch_size must have {self.network.spatial_dims} values (the "
                f"network's spatial dims), got {list(self.rescoring.patch_size)}"
            )
        return self

    @property
    def operating_point_score(self) -> float | None:
        """Return the score at 1 false positive per scan on the card's own evaluation, if recorded.

        ``training.detection.ship`` writes it to ``metrics.synthetic_fresh_set.operating_point_1fp
        .score_threshold``; a policy ``min_score: operating_point`` uses it, so the worklist is
        flagged at the operating point the model was measured at rather than at a guessed 0.5.
        Cards without it (an imported bundle, a hand-written card) return None.
        """
        node: object = self.metrics
        for key in OPERATING_POINT_KEYS:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return float(node) if isinstance(node, int | float) and 0.0 <= node <= 1.0 else None

    def weights_path(self, model_dir: Path) -> Path:
        """Return the weights file next to the card."""
        return model_dir / self.weights.file

    def verify_weights(self, model_dir: Path) -> Path:
        """Return the weights path after checking it exists and matches the card's sha256.

        Raises:
            ModelUnavailable: missing file or checksum mismatch (the file is never loaded then).
        """
        return verified_file(
            model_dir,
            self.weights.file,
            self.weights.sha256,
            what=f"weights of model {self.name!r}",
        )


def verified_file(model_dir: Path, file: str, sha256: str, *, what: str) -> Path:
    """Return ``model_dir / file`` after checking it exists and has the card's sha256.

    Raises:
        ModelUnavailable: missing file or checksum mismatch (the file is never loaded then).
    """
    path = model_dir / file
    if not path.is_file():
        raise ModelUnavailable(
            f"{what} must exist at {path}, got no file; "
            "re-export the model or point TRIAGE_MODELS_DIR at the right folder"
        )
    digest = sha256_file(path)
    if digest != sha256:
        raise ModelUnavailable(
            f"{what} must have sha256 {sha256[:12]}…, got {digest[:12]}… for {path.name}; "
            "refusing to load unverified weights"
        )
    return path


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_card(model_dir: Path) -> ModelCard:
    """Read ``model.yaml`` from a model folder.

    Raises:
        ModelUnavailable: the card is missing or does not validate.
    """
    path = model_dir / "model.yaml"
    if not path.is_file():
        raise ModelUnavailable(f"model folder must contain model.yaml, got none in {model_dir}")
    try:
        return ModelCard.model_validate(yaml.safe_load(path.read_text()))
    except (ValueError, yaml.YAMLError) as e:
        raise ModelUnavailable(f"model card {path} must match the card schema: {e}") from e
