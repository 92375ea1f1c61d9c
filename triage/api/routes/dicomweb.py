"""DICOMweb STOW-RS: ``POST /dicomweb/studies`` (see ``triage.api.stow`` for the conformance)."""

from __future__ import annotations

import logging
from collections import Counter

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from triage.api.context import ApiContext
from triage.api.deps import CtxDep, RemoteDep, Storer
from triage.api.errors import RETRY_AFTER_S, BadRequest
from triage.api.stow import (
    CANNOT_UNDERSTAND,
    DICOM_JSON,
    StoreOutcome,
    boundary_of,
    iter_parts,
    response_body,
    response_status,
    store_part,
)
from triage.store import audit

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

_STOW_DOC = {
    "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    "description": "Store Instances Response Module (PS3.18 Annex I) as DICOM JSON.",
}


@router.post(
    "/studies",
    response_class=JSONResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                'multipart/related; type="application/dicom"': {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
    responses={
        200: _STOW_DOC,
        202: {**_STOW_DOC, "description": "Some instances were stored, some failed."},
        400: {"description": "No parts, or not valid multipart."},
        409: {**_STOW_DOC, "description": "No instance was stored."},
        415: {"description": 'Not multipart/related; type="application/dicom".'},
        503: {**_STOW_DOC, "description": "Out of resources (disk); retry later."},
    },
)
async def stow_studies(
    request: Request, ctx: CtxDep, user: Storer, remote: RemoteDep
) -> JSONResponse:
    """Store DICOM instances (STOW-RS, DICOM PS3.18 §10.5), each acknowledged only once durable.

    Status: 200 all stored; 202 some failed; 409 none stored; 503 none stored for lack of disk.
    """
    boundary = boundary_of(request.headers.get("content-type", ""))
    source = f"stow:{user.user}"
    outcomes: list[StoreOutcome] = []
    try:
        async for part in iter_parts(request.stream(), boundary):
            outcomes.append(
                await run_in_threadpool(
                    store_part,
                    part,
                    store=ctx.store,
                    spool=ctx.spool,
                    source=source,
                    now=ctx.clock(),
                    policy=ctx.ingest_policy,
                )
            )
    except BadRequest:
        if not outcomes:
            raise
        # Instances already stored are durable and must be reported; the rest is one failure.
        outcomes.append(StoreOutcome("", "", CANNOT_UNDERSTAND))
    if not outcomes:
        raise BadRequest("a STOW-RS request must contain at least one part, got none")
    status = response_status(outcomes)
    await run_in_threadpool(
        _audit, ctx, outcomes, user=user.user, role=user.role.value, remote=remote
    )
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(
        response_body(outcomes), status_code=status, media_type=DICOM_JSON, headers=headers
    )


def _audit(
    ctx: ApiContext, outcomes: list[StoreOutcome], *, user: str, role: str, remote: str
) -> None:
    failures = Counter(f"0x{o.failure:04X}" for o in outcomes if o.failure is not None)
    studies = {o.study_uid for o in outcomes if o.study_uid}
    stored = len(outcomes) - sum(failures.values())
    outcome = "ok" if not failures else ("partial" if stored else "failed")
    audit.record(
        ctx.store,
        action="stow",
        actor=user,
        role=role,
        study_uid=next(iter(studies)) if len(studies) == 1 else "",
        outcome=outcome,
        remote=remote,
        now=ctx.clock(),
        detail={"stored": stored, "failed": dict(failures), "studies": len(studies)},
    )
    logger.info("STOW-RS request", extra={"stored": stored, "failed": sum(failures.values())})
