"""Administration: the audit trail and the outbox (list, retry a dead item)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from triage.api.deps import NEEDS_ADMIN, Admin, CtxDep, RemoteDep
from triage.api.errors import Conflict, NotFound
from triage.api.schemas import AuditEntry, OutboxEntry, OutboxPage
from triage.store import audit, outbox
from triage.store.schema import OutboxItem, OutboxState

router = APIRouter(tags=["admin"])


def _entry(item: OutboxItem) -> OutboxEntry:
    return OutboxEntry(
        id=item.id,
        study_uid=item.study_uid,
        kind=item.kind,
        destination=item.destination,
        state=item.state,
        attempts=item.attempts,
        next_attempt_at=item.next_attempt_at,
        last_error=item.last_error,
        created_at=item.created_at,
        delivered_at=item.delivered_at,
    )


@router.get("/audit", dependencies=[NEEDS_ADMIN])
def read_audit(
    ctx: CtxDep,
    action: Annotated[str | None, Query(max_length=48)] = None,
    study_uid: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """Return audit rows, newest first, optionally for one action and/or one study."""
    return [
        AuditEntry.from_record(r)
        for r in audit.recent(ctx.store, action=action, study_uid=study_uid, limit=limit)
    ]


@router.get("/outbox", dependencies=[NEEDS_ADMIN])
def list_outbox(
    ctx: CtxDep,
    state: Annotated[OutboxState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> OutboxPage:
    """Return outbox items, newest first (optionally in one state), and the count per state."""
    query = select(OutboxItem).order_by(OutboxItem.id.desc()).limit(limit)
    if state is not None:
        query = query.where(OutboxItem.state == state.value)
    with ctx.store.session() as s:
        items = [_entry(item) for item in s.scalars(query).all()]
    return OutboxPage(counts=outbox.counts(ctx.store), items=items)


@router.post(
    "/outbox/{item_id}/retry",
    responses={404: {"description": "No such item."}, 409: {"description": "Item not dead."}},
)
def retry_outbox_item(item_id: int, ctx: CtxDep, user: Admin, remote: RemoteDep) -> OutboxEntry:
    """Give a DEAD item a fresh set of delivery attempts (audited as ``outbox_retry``)."""
    now = ctx.clock()
    with ctx.store.session() as s:
        item = s.get(OutboxItem, item_id)
        if item is None:
            raise NotFound(f"outbox item must exist, got id {item_id}")
        if item.state != OutboxState.DEAD.value:
            raise Conflict(f"only a dead outbox item can be retried, got state {item.state!r}")
        study_uid = item.study_uid
    if not outbox.retry_dead(ctx.store, item_id, now=now):
        raise Conflict("only a dead outbox item can be retried, got one that changed meanwhile")
    audit.record(
        ctx.store,
        action="outbox_retry",
        actor=user.user,
        role=user.role.value,
        study_uid=study_uid,
        remote=remote,
        now=now,
        detail={"item_id": item_id},
    )
    with ctx.store.session() as s:
        item = s.get(OutboxItem, item_id)
        assert item is not None  # retry_dead just updated it
        return _entry(item)
