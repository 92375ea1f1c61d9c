"""Fixtures for the HTTP API tests (see ``support.py`` for how studies are built)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.integration.api.support import (
    T0,
    FakeClock,
    Flag,
    Served,
    Studies,
    make_context,
    serve,
)
from triage.api.app import create_app
from triage.api.context import ApiContext
from triage.core.priority import Priority


@pytest.fixture
def clock() -> FakeClock:
    """Return a fake clock at T0."""
    return FakeClock()


@pytest.fixture
def ready() -> Flag:
    """Return the models-ready flag (True)."""
    return Flag()


@pytest.fixture
def ctx(tmp_path: Path, clock: FakeClock, ready: Flag) -> Iterator[ApiContext]:
    """Return a context over an empty store."""
    context = make_context(tmp_path, clock, ready)
    yield context
    context.store.close()


@pytest.fixture
def app(ctx: ApiContext) -> FastAPI:
    """Return the app."""
    return create_app(ctx)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """Return a test client of the app (no network)."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def studies(ctx: ApiContext, tmp_path: Path) -> Studies:
    """Return the study builder."""
    return Studies(ctx, tmp_path / "dicom")


@pytest.fixture
def served(app: FastAPI) -> Iterator[Served]:
    """Serve the app with uvicorn on a free loopback port for the test."""
    with serve(app) as running:
        yield running


@pytest.fixture
def five(studies: Studies, clock: FakeClock) -> dict[str, str]:
    """Five analysed studies whose arrival order is the reverse of their priority order."""
    uids = {
        "routine_newer": studies.dx(ai=Priority.ROUTINE, received_at=T0 - 100),
        "routine_older": studies.dx(ai=Priority.ROUTINE, received_at=T0 - 500),
        "not_analysed": studies.dx(ai=Priority.NOT_ANALYSED, received_at=T0 - 2000),
        "ai_urgent": studies.dx(ai=Priority.URGENT, received_at=T0 - 3000, with_finding=True),
        "stat_order": studies.ct(order="STAT", ai=Priority.ROUTINE, received_at=T0 - 50),
    }
    clock.now = T0 + 100
    return uids
