"""The persistent outbox: everything the engine must deliver, retried until delivered or dead.

An item is keyed by (kind, destination, item key) — for an SR the key is its SOP Instance UID,
which is derived from the study and model versions — so enqueuing the same SR twice is a no-op and
a crash between "sent" and "marked delivered" is resolved by asking the destination (the caller's
``exists`` check) before sending again. Retries back off exponentially; after ``max_attempts`` the
item is DEAD: visible in the API and metrics, re-triable by an admin, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from triage.store.db import Store
from triage.store.schema import OutboxItem, OutboxState


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: ``base_s * 2**(attempt-1)`` capped at ``max_delay_s``."""

    max_attempts: int = 8
    base_s: float = 5.0
    max_delay_s: float = 600.0

    def delay_s(self, attempt: int) -> float:
        """Return the wait before the next attempt.

        >>> p = RetryPolicy(base_s=5, max_delay_s=30)
        >>> p.delay_s(1), p.delay_s(9)
        (5.0, 30.0)
        """
        return float(min(self.max_delay_s, self.base_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One due item, detached from the session."""

    id: int
    study_uid: str
    kind: str
    destination: str
    item_key: str
    payload: str
    attempts: int


def enqueue(
    store: Store,
    *,
    study_uid: str,
    kind: str,
    destination: str,
    item_key: str,
    payload: str,
    now: float,
) -> bool:
    """Add an item unless the same one is already there; return whether it was added."""
    try:
        with store.session() as s:
            s.add(
                OutboxItem(
                    study_uid=study_uid,
                    kind=kind,
                    destination=destination,
                    item_key=item_key,
                    payload=payload,
                    state=OutboxState.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        return True
    except IntegrityError:
        return False


def due(store: Store, *, now: float, limit: int = 20) -> list[Delivery]:
    """Return pending items whose next attempt is due, oldest first."""
    with store.session() as s:
        rows = s.scalars(
            select(OutboxItem)
            .where(OutboxItem.state == OutboxState.PENDING.value, OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
            .limit(limit)
        ).all()
        return [
            Delivery(r.id, r.study_uid, r.kind, r.destination, r.item_key, r.payload, r.attempts)
            for r in rows
        ]


def delivered(store: Store, item_id: int, *, now: float) -> None:
    """Mark an item delivered (idempotent)."""
    with store.session() as s:
        s.execute(
            update(OutboxItem)
            .where(OutboxItem.id == item_id)
            .values(state=OutboxState.DELIVERED.value, delivered_at=now, last_error="")
        )


def failed(store: Store, item_id: int, error: str, *, now: float, retry: RetryPolicy) -> str:
    """Record a failed attempt; schedule the next or mark DEAD. Returns the new state."""
    with store.session() as s:
        item = s.get(OutboxItem, item_id, with_for_update=True)
        if item is None:
            return OutboxState.DEAD.value
        item.attempts += 1
        item.last_error = error[:500]
        if item.attempts >= retry.max_attempts:
            item.state = OutboxState.DEAD.value
        else:
            item.next_attempt_at = now + retry.delay_s(item.attempts)
        return item.state


def retry_dead(store: Store, item_id: int, *, now: float) -> bool:
    """Give a DEAD item a fresh set of attempts (an admin action); return whether it was dead."""
    with store.session() as s:
        n = s.execute(  # type: ignore[attr-defined]  # CursorResult for DML
            update(OutboxItem)
            .where(OutboxItem.id == item_id, OutboxItem.state == OutboxState.DEAD.value)
            .values(state=OutboxState.PENDING.value, attempts=0, next_attempt_at=now)
        ).rowcount
    return bool(n)


def counts(store: Store) -> dict[str, int]:
    """Return the number of items per state (for ``/metrics`` and the admin view)."""
    with store.session() as s:
        rows = s.execute(select(OutboxItem.state, func.count()).group_by(OutboxItem.state)).all()
    return {str(state): int(n) for state, n in rows}
