"""Choose which series of a study each task analyses, from headers only, and say why for the rest.

The rules are data (``configs/series_rules.yaml``), validated here by :class:`SeriesRules`; the
semantics follow MONAI Deploy's series selection (modality, SOP class, body part, image type and
geometry conditions) with two differences that triage needs: a volume task takes the *best*
qualifying series, not the first, and every series that is not chosen comes back with a reason, so
a study that is not analysed can say why ("no series qualifies for nodule triage: body part
ABDOMEN"). Nothing here reads pixel data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.uid import UID

from triage.core.errors import UnsupportedStudy
from triage.core.study import hash_uid
from triage.dicom.reader import SeriesInput, StudyInput

_ORIENTATION_ATOL = 1e-3  # same tolerance as triage.dicom.series
RankKey = Literal["body_part", "most_slices", "thinnest", "lowest_series_number"]


class Task(StrEnum):
    """A triage task that needs its own series."""

    LUNG_NODULE = "lung_nodule"
    FRACTURE = "fracture"


def _normalise_body_part(value: str) -> str:
    return "".join(ch for ch in value.upper() if ch.isalnum())


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BodyPartRule(_Rule):
    """Which BodyPartExamined values qualify; see the YAML comments for the semantics."""

    preferred: tuple[str, ...] | None = None  # None: any body part
    ambiguous: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    allow_empty: bool = True
    region: str = "chest"  # for messages: "not a chest study"

    @field_validator("preferred", "ambiguous", "keywords")
    @classmethod
    def _upper(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if values is None else tuple(_normalise_body_part(v) for v in values)


class ImageTypeRule(_Rule):
    """Values every ImageType must contain, and values none may contain."""

    require_all: tuple[str, ...] = ()
    forbid_any: tuple[str, ...] = ()


class RangeMm(_Rule):
    """An inclusive range in millimetres."""

    min: float = Field(ge=0)
    max: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RangeMm:
        if self.min > self.max:
            raise ValueError(f"min must be <= max, got {self.min} > {self.max}")
        return self


class TaskRule(_Rule):
    """What a series needs to qualify for one task, and how the qualifying ones are ranked."""

    label: str = Field(min_length=1)
    modalities: tuple[str, ...] = Field(min_length=1)
    sop_class_uids: tuple[str, ...] = ()  # empty: any SOP class
    body_part: BodyPartRule = BodyPartRule()
    image_type: ImageTypeRule = ImageTypeRule()
    axial_tolerance_deg: float | None = Field(default=None, ge=0, le=90)
    slice_thickness_mm: RangeMm | None = None
    min_slices: int = Field(default=1, ge=1)
    uniform_geometry: bool = False
    single_frame: bool = False
    choose: Literal["best", "all"]
    rank_by: tuple[RankKey, ...] = ()


class SeriesRules(_Rule):
    """The validated content of ``configs/series_rules.yaml``."""

    version: int = Field(ge=1)
    tasks: dict[Task, TaskRule]


@dataclass(frozen=True, slots=True)
class SkippedSeries:
    """A series not analysed for a task, and why. Carries a hashed UID only (safe to log)."""

    series_uid_hash: str
    modality: str
    description: str
    task: Task
    reason: str


@dataclass(frozen=True)
class Selection:
    """The series each task analyses, and every other (series, task) pair with its reason."""

    chosen: Mapping[Task, tuple[SeriesInput, ...]]
    skipped: tuple[SkippedSeries, ...]
    labels: Mapping[Task, str] = field(default_factory=dict)


def load_series_rules(path: str | os.PathLike[str]) -> SeriesRules:
    """Read and validate the series rules YAML.

    Raises:
        FileNotFoundError: if the file does not exist.
        pydantic.ValidationError: if the content breaks the schema (it names the field).
    """
    with Path(path).open(encoding="utf-8") as stream:
        return SeriesRules.model_validate(yaml.safe_load(stream))


def select_series(study: StudyInput, rules: SeriesRules) -> Selection:
    """Choose the series each task analyses, from headers only.

    A ``best`` task gets at most one series, the top of its ``rank_by`` order; an ``all`` task
    gets every qualifying series. Every series not chosen for a task is listed with the reason.
    """
    chosen: dict[Task, tuple[SeriesInput, ...]] = {}
    skipped: list[SkippedSeries] = []
    for task, rule in rules.tasks.items():
        qualifying: list[SeriesInput] = []
        for series in study.series:
            reasons = series_reasons(series, rule)
            if reasons:
                skipped.append(_skip(series, task, "; ".join(reasons)))
            else:
                qualifying.append(series)
        ranked = _ranked(qualifying, rule)
        chosen[task] = tuple(ranked[:1] if rule.choose == "best" else ranked)
        for loser in ranked[len(chosen[task]) :]:
            skipped.append(_skip(loser, task, _lost_reason(ranked[0])))
    labels = {task: rule.label for task, rule in rules.tasks.items()}
    return Selection(chosen=chosen, skipped=tuple(skipped), labels=labels)


def no_series_reason(selection: Selection, task: Task) -> str | None:
    """Return why no series qualifies for ``task``, or ``None`` when one does.

    >>> no_series_reason(Selection(chosen={Task.FRACTURE: ()}, skipped=()), Task.FRACTURE)
    'no series qualifies for fracture: the study has no series'
    """
    if selection.chosen.get(task):
        return None
    prefix = f"no series qualifies for {selection.labels.get(task, task.value)}: "
    skipped = [s for s in selection.skipped if s.task == task]
    if not skipped:
        return prefix + "the study has no series"
    if len(skipped) == 1:
        return prefix + skipped[0].reason
    return prefix + " | ".join(
        f"series {s.series_uid_hash} ({s.modality}): {s.reason}" for s in skipped
    )


def require_series(selection: Selection, task: Task) -> tuple[SeriesInput, ...]:
    """Return the series chosen for ``task``.

    Raises:
        UnsupportedStudy: if none qualifies; the message lists each series' reason.
    """
    reason = no_series_reason(selection, task)
    if reason is not None:
        raise UnsupportedStudy(reason)
    return tuple(selection.chosen[task])


def series_reasons(series: SeriesInput, rule: TaskRule) -> tuple[str, ...]:
    """Return every reason the series fails ``rule``; empty when it qualifies."""
    if series.modality not in rule.modalities:
        return (f"modality {series.modality or 'absent'}, not {'/'.join(rule.modalities)}",)
    if rule.sop_class_uids and series.sop_class_uid not in rule.sop_class_uids:
        return (f"SOP class {UID(series.sop_class_uid).name} is not an image this task reads",)
    checks = (
        _body_part_reason(series, rule.body_part)[0],
        *_image_type_reasons(series, rule.image_type),
        _geometry_reason(series, rule),
        _axial_reason(series, rule.axial_tolerance_deg),
        _thickness_reason(series, rule.slice_thickness_mm),
        _count_reason(series, rule),
    )
    return tuple(reason for reason in checks if reason)


def _body_part_reason(series: SeriesInput, rule: BodyPartRule) -> tuple[str | None, int]:
    """Return (reason or None, rank): rank 0 explicit match, 1 ambiguous with keyword, 2 empty."""
    part = _normalise_body_part(series.body_part)
    if rule.preferred is None:
        return None, 0
    if not part:
        return (None, 2) if rule.allow_empty else ("body part absent", 0)
    if part in rule.preferred:
        return None, 0
    if part in rule.ambiguous:
        text = " ".join((series.study_description, series.description, series.protocol_name))
        if any(keyword in text.upper() for keyword in rule.keywords):
            return None, 1
        return (
            f"body part {series.body_part}, not a {rule.region} study (no {rule.region} keyword "
            "in the study or series description or protocol name)",
            0,
        )
    return f"body part {series.body_part}", 0


def _image_type_reasons(series: SeriesInput, rule: ImageTypeRule) -> list[str]:
    reasons = []
    for image_type in series.image_types or ((),):
        shown = "\\".join(image_type) or "absent"
        missing = [v for v in rule.require_all if v not in image_type]
        forbidden = [v for v in rule.forbid_any if v in image_type]
        if missing:
            reasons.append(f"image type {shown} lacks {'/'.join(missing)}")
        if forbidden:
            reasons.append(f"image type {shown} is {'/'.join(forbidden)}")
    return reasons


def _geometry_reason(series: SeriesInput, rule: TaskRule) -> str | None:
    if not rule.uniform_geometry:
        return None
    if not series.rows_cols or not series.orientations:
        return "Rows/Columns or ImageOrientationPatient absent"
    if len(series.rows_cols) > 1:
        sizes = ", ".join(f"{r}x{c}" for r, c in series.rows_cols)
        return f"inconsistent Rows x Columns ({sizes})"
    first = series.orientations[0]
    spread = max(
        abs(a - b) for other in series.orientations for a, b in zip(other, first, strict=True)
    )
    if spread > _ORIENTATION_ATOL:
        return f"mixed orientation ({len(series.orientations)} ImageOrientationPatient values)"
    return None


def _axial_reason(series: SeriesInput, tolerance_deg: float | None) -> str | None:
    if tolerance_deg is None or not series.orientations:
        return None
    row, col = series.orientations[0][:3], series.orientations[0][3:]
    normal = (
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    )
    norm = math.sqrt(sum(v * v for v in normal)) or 1.0
    angle_deg = math.degrees(math.acos(min(abs(normal[2]) / norm, 1.0)))
    if angle_deg <= tolerance_deg:
        return None
    plane = "sagittal" if abs(normal[0]) >= abs(normal[1]) else "coronal"
    plane = plane if angle_deg > 45 else "oblique"
    return (
        f"orientation {plane}, not axial (slice normal {angle_deg:.0f} degrees from the "
        f"head-foot axis, tolerance {tolerance_deg:g})"
    )


def _thickness_reason(series: SeriesInput, allowed: RangeMm | None) -> str | None:
    if allowed is None:
        return None
    thickness = series.slice_thickness_mm
    if thickness is None:
        return "SliceThickness absent"
    if not allowed.min <= thickness <= allowed.max:
        return f"slice thickness {thickness:.2f} mm, outside {allowed.min:g}-{allowed.max:g} mm"
    return None


def _count_reason(series: SeriesInput, rule: TaskRule) -> str | None:
    if rule.single_frame and series.max_frames_per_instance > 1:
        return f"multi-frame images ({series.max_frames_per_instance} frames), single-frame needed"
    if series.n_frames < rule.min_slices:
        return (
            f"series has {series.n_frames} slices, fewer than {rule.min_slices} needed for "
            f"{rule.label} (truncated?)"
        )
    return None


def _ranked(qualifying: Sequence[SeriesInput], rule: TaskRule) -> list[SeriesInput]:
    """Return the series best first; the series UID breaks ties so the order is reproducible."""
    keyed = [((*_rank_key(series, rule), series.series_uid), series) for series in qualifying]
    return [series for _, series in sorted(keyed, key=lambda pair: pair[0])]


def _rank_key(series: SeriesInput, rule: TaskRule) -> tuple[float, ...]:
    key: list[float] = []
    for name in rule.rank_by:
        if name == "body_part":
            key.append(_body_part_reason(series, rule.body_part)[1])
        elif name == "most_slices":
            key.append(-series.n_frames)
        elif name == "thinnest":
            key.append(series.slice_thickness_mm or math.inf)
        else:
            number = series.series_number
            key.extend((number is None, number or 0))
    return tuple(key)


def _lost_reason(best: SeriesInput) -> str:
    thickness = f"{best.slice_thickness_mm:.2f} mm" if best.slice_thickness_mm else "no thickness"
    return (
        f"qualifies, but series {hash_uid(best.series_uid)} ranked higher "
        f"({best.n_frames} slices, {thickness})"
    )


def _skip(series: SeriesInput, task: Task, reason: str) -> SkippedSeries:
    return SkippedSeries(
        series_uid_hash=hash_uid(series.series_uid),
        modality=series.modality,
        description=series.description,
        task=task,
        reason=reason,
    )
