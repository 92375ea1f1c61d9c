"""A radiologist's actions on one study: read it, acknowledge the AI result, override its priority.

Each action writes an audit row (who, when, from where, what changed). An override changes only
the worklist: the AI's SR and its priority stay as produced, so the record of what the model said
is never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.api.auth import Principal
from triage.api.errors import NotFound
from triage.api.results import finding_details, parse_result, reasons_of, tasks_of
from triage.api.schemas import AuditEntry, OverrideRequest, StudyDetail, WorklistRow
from triage.api.worklist import row_of
from triage.core.priority import Priority
from triage.core.study import hash_uid
from triage.store import audit
from triage.store.db import Store
from triage.store.schema import Study

STUDY_READ = "study_read"
ACKNOWLEDGE = "acknowledge"
OVERRIDE = "override"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, for the audit trail."""

    principal: Principal
    remote: str


def _missing(study_uid: str) -> NotFound:
    return NotFound(f"study must exist, got an unknown study UID (tag {hash_uid(study_uid)})")


def _audit(
    store: Store,
    actor: Actor,
    *,
    action: str,
    study_uid: str,
    now: float,
    detail: dict[str, object],
) -> None:
    audit.record(
        store,
        action=action,
        actor=actor.principal.user,
        role=actor.principal.role.value,
        study_uid=study_uid,
        remote=actor.remote,
        now=now,
        detail=detail,
    )


def history(store: Store, study_uid: str) -> list[AuditEntry]:
    """Return the study's acknowledgements and overrides, newest first."""
    records = [
        *audit.recent(store, action=ACKNOWLEDGE, study_uid=study_uid, limit=100),
        *audit.recent(store, action=OVERRIDE, study_uid=study_uid, limit=100),
    ]
    records.sort(key=lambda r: r.at, reverse=True)
    return [AuditEntry.from_record(r) for r in records]


def read_study(store: Store, study_uid: str, *, actor: Actor, now: float) -> StudyDetail:
    """Return the study's detail and record the read in the audit trail.

    Raises:
        NotFound: no such study.
    """
    with store.session() as s:
        study = s.get(Study, study_uid)
        if study is None:
            raise _missing(study_uid)
        row = row_of(study, now=now)
        result = parse_result(study.result_json)
        override = (study.override_priority, study.override_reason, study.override_by)
    _audit(store, actor, action=STUDY_READ, study_uid=study_uid, now=now, detail={})
    return StudyDetail(
        **row.model_dump(),
        reasons=reasons_of(result),
        policy_version=(v if isinstance(v := result.get("policy_version"), int) else None),
        finding_details=finding_details(result, study_path=f"/api/v1/studies/{study_uid}"),
        tasks=tasks_of(result),
        override_priority=Priority(override[0]) if override[0] else None,
        override_reason=override[1],
        override_by=override[2],
        history=history(store, study_uid),
    )


def acknowledge(store: Store, study_uid: str, *, actor: Actor, now: float) -> WorklistRow:
    """Mark the current AI result as seen by a radiologist (the row stops saying "unverified").

    Raises:
        NotFound: no such study.
    """
    with store.session() as s:
        study = s.get(Study, study_uid, with_for_update=True)
        if study is None:
            raise _missing(study_uid)
        study.acknowledged_by = actor.principal.user[:64]
        study.acknowledged_at = now
        detail: dict[str, object] = {
            "priority": study.override_priority or study.effective_priority,
            "ai_priority": study.ai_priority,
            "sr_sop_uid": study.sr_sop_uid,
        }
        row = row_of(study, now=now)
    _audit(store, actor, action=ACKNOWLEDGE, study_uid=study_uid, now=now, detail=detail)
    return row


def override(
    store: Store, study_uid: str, request: OverrideRequest, *, actor: Actor, now: float
) -> WorklistRow:
    """Set the priority the worklist shows, with the radiologist's reason; the SR is untouched.

    Raises:
        NotFound: no such study.
    """
    with store.session() as s:
        study = s.get(Study, study_uid, with_for_update=True)
        if study is None:
            raise _missing(study_uid)
        before = study.override_priority or study.effective_priority
        study.override_priority = request.priority
        study.override_reason = request.reason
        study.override_by = actor.principal.user[:64]
        row = row_of(study, now=now)
    detail: dict[str, object] = {"from": before, "to": request.priority, "reason": request.reason}
    _audit(store, actor, action=OVERRIDE, study_uid=study_uid, now=now, detail=detail)
    return row
