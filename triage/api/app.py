"""The FastAPI application: built by :func:`create_app` from an :class:`ApiContext`, nothing global.

Everything the routes use lives on ``app.state`` (the context, the key-image renderer, the change
feed, the metrics registry), so two apps in one process (tests) never share state. Operational
errors (:class:`TriageError`) become HTTP responses in exactly one handler here (STYLE H13).

Routes (all JSON under ``/api/v1``; the worklist page at ``/``):

==========================================  ===================  ===============================
Route                                       Right                Roles
==========================================  ===================  ===============================
GET  /studies, /studies/{uid}               read                 radiologist, integrator, admin
GET  /studies/{uid}/key-image.png           read                 radiologist, integrator, admin
GET  /events, /whoami                       read                 radiologist, integrator, admin
POST /studies/{uid}/acknowledge, /override  review               radiologist, admin
POST /dicomweb/studies (STOW-RS)            store                integrator, admin
GET  /audit, /outbox; POST /outbox/{id}/..  admin                admin
GET  /config; PUT /config/policy            admin                admin
GET  /health/live, /health/ready, /metrics  none                 anyone (no patient data)
==========================================  ===================  ===============================
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triage import __version__
from triage.api.changes import ChangeFeed
from triage.api.context import ApiContext
from triage.api.errors import RETRY_AFTER_S, status_for
from triage.api.key_image import KeyImages
from triage.api.metrics import StoreCollector
from triage.api.routes import admin, config, dicomweb, events, health, studies
from triage.core.errors import TriageError

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).with_name("static")

TAGS = [
    {"name": "studies", "description": "The worklist and one study; acknowledge and override."},
    {"name": "events", "description": "Live worklist changes (server-sent events)."},
    {"name": "dicomweb", "description": "STOW-RS: store instances over HTTP (PS3.18 §10.5)."},
    {"name": "admin", "description": "Audit trail, outbox, configuration (admin role)."},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics (no auth)."},
]

# The page loads only its own files; images are blob: URLs fetched with the token header.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class SecurityHeaders:
    """ASGI middleware: no caching of API answers (they carry patient data), CSP for the page.

    Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses (events) pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to every HTTP response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        if path.startswith(API_PREFIX) and not path.startswith(f"{API_PREFIX}/docs"):
            extra.append((b"cache-control", b"no-store"))
        elif path == "/" or path.startswith("/static/"):
            extra += [
                (b"content-security-policy", PAGE_CSP.encode()),
                (b"x-frame-options", b"DENY"),
            ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _triage_error(_request: Request, exc: Exception) -> Response:
    """Map an operational error to its status once; the message is PHI-free by contract (H14)."""
    assert isinstance(exc, TriageError)
    status = status_for(exc)
    if status >= 500:
        logger.warning("request failed", extra={"status": status, "error": type(exc).__name__})
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def create_app(ctx: ApiContext) -> FastAPI:
    """Return the HTTP application serving ``ctx``'s store: JSON API, STOW-RS, page, metrics.

    Args:
        ctx: the store, spool, tokens and probes, built by the composition root.
    """
    app = FastAPI(
        title="Triage engine API",
        version=__version__,
        summary="Radiology AI triage worklist, STOW-RS intake, audit and operations.",
        description="AI results are decision support, unverified until a radiologist "
        "acknowledges them. Not for diagnostic use.",
        openapi_tags=TAGS,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.key_images = KeyImages(ctx.store, ctx.spool, ctx.cache_dir)
    app.state.change_feed = ChangeFeed(ctx.store)
    app.state.policy_lock = threading.Lock()  # PUT /config/policy: version check + write as one
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx.store, ctx.spool, ctx.models_ready))
    app.state.metrics_registry = registry
    app.add_exception_handler(TriageError, _triage_error)
    for module in (studies, events, dicomweb, admin, config, health):
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_api_route("/", _index, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    return app
