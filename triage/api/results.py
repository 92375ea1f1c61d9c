"""Read the stored result JSON (``triage.reporting.summary_json``) into API shapes.

The JSON was written by this engine, but possibly by an older version, so every field is read
defensively: a missing or odd value gives an empty or null field, never a 500 on the worklist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from triage.api.schemas import (
    FindingDetail,
    FindingSummary,
    Measurement,
    ModelRef,
    TaskDetail,
)

JsonObject = Mapping[str, object]


def parse_result(text: str) -> JsonObject:
    """Return the result JSON as a mapping ({} when empty or unreadable).

    >>> parse_result(""), parse_result("[1]"), parse_result('{"a": 1}')
    ({}, {}, {'a': 1})
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _objects(value: object) -> list[JsonObject]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, dict)]


def findings_of(result: JsonObject) -> list[JsonObject]:
    """Return the result's findings, in stored order (their index is the key-image index)."""
    return _objects(result.get("findings"))


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _floats(value: object) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out = [_float(v) for v in value]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def _box(value: object) -> dict[str, list[float]] | None:
    if not isinstance(value, dict):
        return None
    lo, hi = _floats(value.get("min")), _floats(value.get("max"))
    return None if lo is None or hi is None else {"min": lo, "max": hi}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def finding_text(finding: JsonObject) -> str:
    """Return a one-line description of a finding.

    >>> finding_text({"type": "nodule", "diameter_mm": 9.24, "lung_rads_size_category": "4A",
    ...               "score": 0.871})
    'nodule 9.2 mm, Lung-RADS 4A, score 0.87'
    >>> finding_text({"type": "fracture", "label": "fracture", "width_mm": 3.0,
    ...               "height_mm": 12.5, "score": 0.9})
    'fracture 3.0 x 12.5 mm, score 0.90'
    """
    kind = _str(finding.get("type")) or "finding"
    parts: list[str] = []
    if kind == "nodule":
        diameter = _float(finding.get("diameter_mm"))
        head = "nodule" if diameter is None else f"nodule {diameter:.1f} mm"
        category = _str(finding.get("lung_rads_size_category"))
        parts = [head] + ([f"Lung-RADS {category}"] if category else [])
    else:
        width, height = _float(finding.get("width_mm")), _float(finding.get("height_mm"))
        label = _str(finding.get("label")) or kind
        size = "" if width is None or height is None else f" {width:.1f} x {height:.1f} mm"
        parts = [label + size]
    score = _float(finding.get("score"))
    if score is not None:
        parts.append(f"score {score:.2f}")
    return ", ".join(parts)


def finding_summaries(result: JsonObject) -> list[FindingSummary]:
    """Return the worklist view of each finding."""
    out: list[FindingSummary] = []
    for index, f in enumerate(findings_of(result)):
        kind = _str(f.get("type")) or "finding"
        out.append(
            FindingSummary(
                index=index,
                type=kind,
                label=_str(f.get("label")) or kind,
                score=_float(f.get("score")) or 0.0,
                text=finding_text(f),
            )
        )
    return out


def summary_text(result: JsonObject, summaries: Sequence[FindingSummary]) -> str:
    """Return the findings column text: each finding, or why there is none."""
    if not result:
        return ""
    if summaries:
        return "; ".join(s.text for s in summaries)
    if result.get("priority") == "not_analysed":
        return "not analysed (see state)"
    return "no findings reported"


_MEASURES = (
    ("diameter_mm", "diameter", "mm"),
    ("volume_mm3", "volume", "mm3"),
    ("width_mm", "width", "mm"),
    ("height_mm", "height", "mm"),
)


def finding_details(result: JsonObject, *, study_path: str) -> list[FindingDetail]:
    """Return each finding with its measurements and the URL of its key image."""
    out: list[FindingDetail] = []
    for summary, f in zip(finding_summaries(result), findings_of(result), strict=True):
        measures = [
            Measurement(name=name, value=v, unit=unit)
            for key, name, unit in _MEASURES
            if (v := _float(f.get(key))) is not None
        ]
        out.append(
            FindingDetail(
                index=summary.index,
                type=summary.type,
                label=summary.label,
                score=summary.score,
                measurements=measures,
                series_uid=_str(f.get("series_uid")) or None,
                sop_instance_uid=_str(f.get("sop_instance_uid")) or None,
                center_lps_mm=_floats(f.get("center_lps_mm")),
                lung_rads_size_category=_str(f.get("lung_rads_size_category")) or None,
                box_ijk=_box(f.get("box_ijk")),
                box_col_row_px=_box(f.get("box_col_row_px")),
                key_image_url=f"{study_path}/key-image.png?finding={summary.index}",
            )
        )
    return out


def models_of(result: JsonObject) -> list[ModelRef]:
    """Return the models named in the result."""
    return [
        ModelRef(name=_str(m.get("name")), version=_str(m.get("version")))
        for m in _objects(result.get("models"))
    ]


def tasks_of(result: JsonObject) -> list[TaskDetail]:
    """Return what each task did."""
    return [
        TaskDetail(
            task=_str(t.get("task")),
            series_uid=_str(t.get("series_uid")) or None,
            status=_str(t.get("status")),
            reason=_str(t.get("reason")) or None,
            seconds=_float(t.get("seconds")),
            provider=_str(t.get("provider")),
        )
        for t in _objects(result.get("tasks"))
    ]


def reasons_of(result: JsonObject) -> list[str]:
    """Return the decision's reasons."""
    value = result.get("reasons")
    return [r for r in value if isinstance(r, str)] if isinstance(value, list) else []


def model_for_task(result: JsonObject, task: str) -> str:
    """Return the name of the model that ran ``task`` ("unknown" when the result cannot tell).

    The result lists models without their task; a model whose entry names the task, the only
    model, or the model whose name starts with the task's name is taken, in that order.

    >>> model_for_task({"models": [{"name": "lung_nodule_det"}, {"name": "fracture_det"}]},
    ...                "fracture")
    'fracture_det'
    """
    models = _objects(result.get("models"))
    named = [m for m in models if _str(m.get("task")) == task]
    if not named and len(models) == 1:
        named = models
    if not named:
        named = [m for m in models if _str(m.get("name")).startswith(task)]
    return (_str(named[0].get("name")) or "unknown") if named else "unknown"
