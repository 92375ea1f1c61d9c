"""Tell when the worklist changed, cheaply, so open pages refresh live (server-sent events).

The store has no notification channel that works on both SQLite and PostgreSQL, so the API polls
one aggregate query: a *change token* that moves whenever a study arrives, changes state, is
analysed, acknowledged or overridden. All open event streams share one poll (cached for
``min_interval_s``), so ten open pages cost the database the same as one.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select

from triage.store.db import Store
from triage.store.schema import AuditEvent, Study

WORKLIST_ACTIONS = ("acknowledge", "override")


def change_token(store: Store) -> str:
    """Return a short digest of everything the worklist shows that can change.

    Times only grow, counts per state move with every transition, and the newest
    acknowledge/override audit row catches the edits that change no time column.
    """
    with store.session() as s:
        times = s.execute(
            select(
                func.count(),
                func.max(Study.last_received_at),
                func.max(Study.completed_at),
                func.max(Study.started_at),
                func.max(Study.finished_at),
                func.max(Study.acknowledged_at),
            )
        ).one()
        states = s.execute(
            select(Study.state, func.count()).group_by(Study.state).order_by(Study.state)
        ).all()
        edits = s.scalar(
            select(func.max(AuditEvent.id)).where(AuditEvent.action.in_(WORKLIST_ACTIONS))
        )
    raw = repr((tuple(times), [tuple(r) for r in states], edits))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class ChangeFeed:
    """The latest change token, recomputed at most once per ``min_interval_s`` (thread-safe)."""

    def __init__(
        self,
        store: Store,
        *,
        min_interval_s: float = 0.4,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep the store; nothing is queried until :meth:`current` is called."""
        self.store = store
        self.min_interval_s = min_interval_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._token = ""
        self._at = -float("inf")

    def current(self) -> str:
        """Return the change token, from the cache when it is fresh enough."""
        with self._lock:
            now = self._monotonic()
            if now - self._at >= self.min_interval_s:
                self._token = change_token(self.store)
                self._at = now
            return self._token
