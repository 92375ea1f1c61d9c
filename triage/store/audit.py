"""The audit trail: one row per read, acknowledgement, override, config change or rejection.

Details are JSON and must never carry patient names or IDs; a study is named by its UID, which the
security officer can resolve in the store, not by anything printed from its header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from triage.store.db import Store
from triage.store.schema import AuditEvent


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit row as read back."""

    at: float
    actor: str
    role: str
    action: str
    study_uid: str
    outcome: str
    remote: str
    detail: Mapping[str, object]


def record(
    store: Store,
    *,
    action: str,
    actor: str,
    now: float,
    role: str = "",
    study_uid: str = "",
    outcome: str = "ok",
    remote: str = "",
    detail: Mapping[str, object] | None = None,
) -> None:
    """Append one audit row (its own transaction, so it survives a failing request)."""
    with store.session() as s:
        s.add(
            AuditEvent(
                at=now,
                actor=actor[:64],
                role=role[:32],
                action=action[:48],
                study_uid=study_uid[:64],
                outcome=outcome[:16],
                remote=remote[:64],
                detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
            )
        )


def recent(
    store: Store, *, action: str | None = None, study_uid: str | None = None, limit: int = 200
) -> list[AuditRecord]:
    """Return the newest audit rows first, optionally for one action and/or study."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        q = q.where(AuditEvent.action == action)
    if study_uid:
        q = q.where(AuditEvent.study_uid == study_uid)
    with store.session() as s:
        return [
            AuditRecord(
                e.at,
                e.actor,
                e.role,
                e.action,
                e.study_uid,
                e.outcome,
                e.remote,
                json.loads(e.detail or "{}"),
            )
            for e in s.scalars(q).all()
        ]
