"""The model I/O contract as data: network shape, detection head settings and preprocessing.

These pydantic models are what a model card (``model.yaml``) declares; the same values build the
torch network for training/export and drive the numpy post-processing at serving time, so the two
cannot drift.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Strict):
    """A MONAI ResNet-FPN RetinaNet (bundle: ResNet-50 bottleneck [3,4,6,3], 256 FPN channels)."""

    spatial_dims: Literal[2, 3] = 3
    block: Literal["basic", "bottleneck"] = "bottleneck"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    block_inplanes: tuple[int, int, int, int] = (64, 128, 256, 512)
    conv1_t_size: tuple[int, ...] = (7, 7, 7)
    conv1_t_stride: tuple[int, ...] = (2, 2, 1)
    returned_layers: tuple[int, ...] = (1, 2)
    fpn_channels: int = Field(256, ge=8)
    num_classes: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _dims_match(self) -> NetworkSpec:
        for name in ("conv1_t_size", "conv1_t_stride"):
            if len(getattr(self, name)) != self.spatial_dims:
                raise ValueError(
                    f"{name} must have {self.spatial_dims} values, got {getattr(self, name)}"
                )
        return self


class DetectionSpec(_Strict):
    """Anchors, box coder and box selection, as in MONAI's ``RetinaNetDetector``."""

    base_anchor_shapes: tuple[tuple[int, ...], ...] = ((6, 8, 4), (8, 6, 5), (10, 10, 6))
    feature_map_scales: tuple[int, ...] = (1, 2, 4)
    size_divisible: tuple[int, ...] = (16, 16, 8)
    box_coder_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    score_thresh: float = 0.02
    topk_candidates_per_level: int = 1000
    nms_thresh: float = 0.22
    detections_per_img: int = 300
    roi_size: tuple[int, ...] = (512, 512, 192)
    overlap: float = Field(0.25, ge=0.0, lt=1.0)
    # CT only: drop candidates whose centre is outside the lungs dilated by this margin
    # (None: off, as in the MONAI bundle).
    lung_mask_margin_mm: float | None = Field(None, ge=0.0)
    # Test-time augmentation: extra passes over the image flipped along these (i, j[, k]) axis
    # sets, each mapped back and averaged with the plain pass before box selection. Empty: one
    # pass, as in the MONAI bundle. The card's operating point must be measured with the same
    # setting, so it is part of the card, not a runtime switch.
    tta_flip_axes: tuple[tuple[int, ...], ...] = ()

    @model_validator(mode="after")
    def _flip_axes_valid(self) -> DetectionSpec:
        dims = len(self.roi_size)
        seen: set[tuple[int, ...]] = set()
        for axes in self.tta_flip_axes:
            key = tuple(sorted(axes))
            if not axes or len(set(axes)) != len(axes) or any(a < 0 or a >= dims for a in axes):
                raise ValueError(
                    "tta_flip_axes entries must be non-empty sets of distinct axes in "
                    f"0..{dims - 1}, got {list(axes)}"
                )
            if key in seen:
                raise ValueError(f"tta_flip_axes lists the axis set {list(key)} twice; remove one")
            seen.add(key)
        return self

    @property
    def num_anchors(self) -> int:
        """Return the number of anchors per feature-map location."""
        return len(self.base_anchor_shapes)


class IntensitySpec(_Strict):
    """How raw values become network input in 0..1.

    ``window``: ``[low, high]`` (HU for CT) mapped to 0..1 and clipped, like MONAI's
    ScaleIntensityRanged.
    ``percentile``: the image's own ``[low, high]`` percentiles mapped to 0..1 (radiographs, whose
    values have no physical unit).

    ``local_sigma_mm`` (radiographs only; None: off): blend in local contrast normalisation, each
    pixel's deviation from its Gaussian neighbourhood (this sigma) divided by the neighbourhood's
    standard deviation, with weight ``local_weight``. Whole-image percentiles leave faint structures
    such as rib fractures over the mediastinum a few hundredths of the 0..1 range; the local term
    gives them the same range as a fracture in an isolated limb bone.
    """

    mode: Literal["window", "percentile"] = "window"
    low: float = -1024.0
    high: float = 300.0
    local_sigma_mm: float | None = Field(None, gt=0.0)
    local_weight: float = Field(0.5, ge=0.0, le=1.0)


class PreprocessSpec(_Strict):
    """Geometry the network expects: voxel size (i, j[, k]) in mm and axis codes (MONAI's).

    ``anti_alias`` (CT; default off, so older cards keep the input they were trained on):
    Gaussian-filter every axis whose voxel grows before resampling
    (:func:`triage.imaging.resample.resample_to_spacing`), so a thin-slice series reaches the
    model grid with the noise of a thicker reconstruction instead of its own.
    """

    target_spacing_mm: tuple[float, ...] = (0.703125, 0.703125, 1.25)
    axcodes: str = "RAS"
    intensity: IntensitySpec = IntensitySpec()
    anti_alias: bool = False


def check_preprocess_for_task(task: str, prep: PreprocessSpec) -> None:
    """Refuse preprocessing switches that the task's path would silently ignore.

    ``local_sigma_mm`` acts only on radiographs and ``anti_alias`` only on CT (the radiograph path
    always smooths before decimating); a card or experiment that sets one for the other task would
    otherwise be trusted to do something it does not.

    Raises:
        ValueError: names the field and what to do instead.
    """
    if task == "lung_nodule" and prep.intensity.local_sigma_mm is not None:
        raise ValueError(
            "preprocess.intensity.local_sigma_mm applies to radiographs (task fracture) only, got "
            f"{prep.intensity.local_sigma_mm:g} mm for task lung_nodule; remove it"
        )
    if task == "fracture" and prep.anti_alias:
        raise ValueError(
            "preprocess.anti_alias applies to CT (task lung_nodule) only, got true for task "
            "fracture (radiographs are always smoothed before downsampling); remove it"
        )
