"""The worklist: which studies, in which order, with what a radiologist needs to pick the next one.

Order: the displayed priority (a radiologist's override, else the effective priority) by
:func:`triage.core.priority.rank`, most urgent first; then the study waiting longest (oldest last
instance) first. The order is computed in SQL so that ``limit`` cuts the least urgent rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, case, func, or_, select

from triage.api.results import (
    finding_summaries,
    models_of,
    parse_result,
    summary_text,
)
from triage.api.schemas import WorklistPage, WorklistRow
from triage.core.priority import Priority, rank
from triage.store.db import Store
from triage.store.schema import JobState, Study

MAX_ROWS = 1000
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")


@dataclass(frozen=True, slots=True)
class WorklistFilter:
    """What the caller asked to see; empty sequences and None mean no restriction."""

    priorities: Sequence[Priority] = ()
    modalities: Sequence[str] = ()
    states: Sequence[JobState] = ()
    received_from: datetime | None = None  # first instance at or after
    received_to: datetime | None = None  # first instance before
    acknowledged: bool | None = None
    limit: int = 500


def displayed_priority() -> ColumnElement[str]:
    """Return the SQL expression of the priority the worklist shows."""
    return func.coalesce(Study.override_priority, Study.effective_priority)


def _rank_expr() -> ColumnElement[int]:
    # Unknown values rank as NOT_ANALYSED: never silently routine (STYLE H20).
    return case(
        {p.value: rank(p) for p in Priority},
        value=displayed_priority(),
        else_=rank(Priority.NOT_ANALYSED),
    )


def _epoch(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _modality_clause(modality: str) -> ColumnElement[bool]:
    m = modality.strip().upper()
    if not _MODALITY.match(m):
        raise ValueError(f"modality must be 1-16 letters or digits, got {len(m)} characters")
    col = Study.modalities
    return or_(col == m, col.like(f"{m},%"), col.like(f"%,{m}"), col.like(f"%,{m},%"))


def _filtered(query: Select[Study], flt: WorklistFilter) -> Select[Study]:
    if flt.priorities:
        query = query.where(displayed_priority().in_([p.value for p in flt.priorities]))
    if flt.modalities:
        query = query.where(or_(*(_modality_clause(m) for m in flt.modalities)))
    if flt.states:
        query = query.where(Study.state.in_([s.value for s in flt.states]))
    if flt.received_from is not None:
        query = query.where(Study.first_received_at >= _epoch(flt.received_from))
    if flt.received_to is not None:
        query = query.where(Study.first_received_at < _epoch(flt.received_to))
    if flt.acknowledged is not None:
        current = Study.acknowledged_at.is_not(None) & or_(
            Study.finished_at.is_(None), Study.acknowledged_at >= Study.finished_at
        )
        query = query.where(current if flt.acknowledged else ~current)
    return query


def worklist(store: Store, flt: WorklistFilter, *, now: float) -> WorklistPage:
    """Return the filtered worklist, most urgent first, then longest waiting.

    Raises:
        ValueError: a filter value is malformed (the route validates first; this is a guard).
    """
    limit = max(1, min(flt.limit, MAX_ROWS))
    query = _filtered(select(Study), flt).order_by(
        _rank_expr().desc(), Study.last_received_at.asc(), Study.study_uid.asc()
    )
    with store.session() as s:
        rows = [row_of(study, now=now) for study in s.scalars(query.limit(limit)).all()]
    return WorklistPage(now=now, count=len(rows), studies=rows)


def _priority(value: str | None) -> Priority | None:
    if not value:
        return None
    try:
        return Priority(value)
    except ValueError:
        return Priority.NOT_ANALYSED


def is_acknowledged(study: Study) -> bool:
    """Return whether the current AI result was acknowledged.

    An acknowledgement older than the latest finished analysis does not count: a re-analysis
    (late instances) replaces the result the radiologist saw, so the new one is unverified again.
    """
    if study.acknowledged_at is None:
        return False
    return study.finished_at is None or study.acknowledged_at >= study.finished_at


def row_of(study: Study, *, now: float) -> WorklistRow:
    """Return the worklist row of a study."""
    result = parse_result(study.result_json)
    summaries = finding_summaries(result)
    effective = _priority(study.effective_priority) or Priority.NOT_ANALYSED
    override = _priority(study.override_priority)
    acknowledged = is_acknowledged(study)
    return WorklistRow(
        study_uid=study.study_uid,
        priority=override or effective,
        effective_priority=effective,
        ai_priority=_priority(study.ai_priority),
        order_priority=study.order_priority,
        overridden=override is not None,
        state=study.state,
        reason=study.reason,
        waiting_s=max(0.0, now - study.last_received_at),
        received_at=study.last_received_at,
        first_received_at=study.first_received_at,
        finished_at=study.finished_at,
        findings=summaries,
        findings_summary=summary_text(result, summaries),
        models=models_of(result),
        sr_sop_uid=study.sr_sop_uid or None,
        acknowledged=acknowledged,
        acknowledged_by=study.acknowledged_by or None,
        acknowledged_at=study.acknowledged_at,
        unverified=not acknowledged,
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        accession_number=study.accession_number,
        study_description=study.study_description,
        study_date=study.study_date,
        modalities=[m for m in study.modalities.split(",") if m],
    )
