"""Liveness, readiness and Prometheus metrics: no authentication (see the module docstring).

Probes and scrapers run without a user: liveness and readiness name only failing checks, and the
metrics are aggregate counts over closed label sets (no UIDs, no free text, no patient data). A
Prometheus holding an admin token could also retry outbox items and read the audit trail, which is
worse than open aggregate counts; keep the HTTP port on the hospital network (default 127.0.0.1).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from triage.api.context import ApiContext
from triage.api.deps import CtxDep
from triage.api.schemas import HealthCheck, HealthReport
from triage.store.db import ping

router = APIRouter(tags=["health"])


@router.get("/health/live")
def live() -> HealthReport:
    """Return ok while the process serves HTTP."""
    return HealthReport(status="ok")


def _store_check(ctx: ApiContext) -> HealthCheck:
    try:
        ping(ctx.store.engine)
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"; the class is enough
        return HealthCheck(ok=False, detail=f"store must answer a query, got {type(e).__name__}")
    return HealthCheck(ok=True, detail="ok")


def _models_check(ctx: ApiContext) -> HealthCheck:
    try:
        ready = bool(ctx.models_ready())
    except Exception as e:  # noqa: BLE001 - a crashing probe means "not ready"
        return HealthCheck(ok=False, detail=f"models must be loaded, got {type(e).__name__}")
    return HealthCheck(ok=ready, detail="ok" if ready else "models must be loaded, got not ready")


def _disk_check(ctx: ApiContext) -> HealthCheck:
    limit = ctx.ingest_policy.max_disk_fill
    try:
        used = 1.0 - ctx.spool.free_fraction()
    except OSError as e:
        return HealthCheck(ok=False, detail=f"spool must be writable, got {type(e).__name__}")
    if used > limit:
        return HealthCheck(
            ok=False, detail=f"spool disk must be at most {limit:.0%} full, got {used:.1%}"
        )
    return HealthCheck(ok=True, detail=f"{used:.1%} used")


@router.get(
    "/health/ready",
    responses={503: {"model": HealthReport, "description": "A check failed; each is named."}},
)
def ready(ctx: CtxDep) -> JSONResponse:
    """Return 200 when the store answers, the models are loaded and the disk has room, else 503."""
    checks = {"store": _store_check(ctx), "models": _models_check(ctx), "disk": _disk_check(ctx)}
    ok = all(c.ok for c in checks.values())
    report = HealthReport(status="ok" if ok else "fail", checks=checks)
    return JSONResponse(report.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(request: Request) -> Response:
    """Return the Prometheus metrics, read from the store at scrape time."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
