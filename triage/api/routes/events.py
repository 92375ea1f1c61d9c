"""Live worklist updates as server-sent events, and who the caller is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from triage.api.auth import ROLE_RIGHTS
from triage.api.deps import NEEDS_READ, FeedDep, Reader
from triage.api.schemas import WhoAmI

router = APIRouter(tags=["events"])

POLL_S = 0.5
RETRY_MS = 2000


@router.get("/events", response_class=EventSourceResponse, dependencies=[NEEDS_READ])
async def worklist_events(feed: FeedDep) -> AsyncIterator[ServerSentEvent]:
    """Stream a ``worklist`` event whenever the worklist changes (and once on connect).

    The event's data is an opaque change token; the page re-reads ``GET /studies`` on each event.
    Send the token in the ``Authorization`` header (the page uses a streaming ``fetch``), never in
    the URL. The store is polled about every 0.5 s, shared by all open streams.
    """
    last = await run_in_threadpool(feed.current)
    yield ServerSentEvent(event="worklist", data={"token": last}, retry=RETRY_MS)
    while True:
        await asyncio.sleep(POLL_S)
        token = await run_in_threadpool(feed.current)
        if token != last:
            last = token
            yield ServerSentEvent(event="worklist", data={"token": token})


@router.get("/whoami")
def whoami(user: Reader) -> WhoAmI:
    """Return the caller's user name, role and rights (the page uses it to check the token)."""
    rights = sorted(r.value for r in ROLE_RIGHTS[user.role])
    return WhoAmI(user=user.user, role=user.role.value, rights=rights)
