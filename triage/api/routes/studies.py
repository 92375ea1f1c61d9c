"""The worklist and one study: list, detail, key image, acknowledge, override."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import StringConstraints

from triage.api.deps import NEEDS_READ, CtxDep, KeyImagesDep, Reader, RemoteDep, Reviewer
from triage.api.key_image import DEFAULT_SIZE_PX, MAX_SIZE_PX, MIN_SIZE_PX
from triage.api.review import Actor, acknowledge, override, read_study
from triage.api.schemas import OverrideRequest, StudyDetail, WorklistPage, WorklistRow
from triage.api.worklist import MAX_ROWS, WorklistFilter, worklist
from triage.core.priority import Priority
from triage.store.schema import JobState

router = APIRouter(prefix="/studies", tags=["studies"])

Modality = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,16}$")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such study (or finding)."}}


@router.get("", dependencies=[NEEDS_READ])
def list_studies(
    ctx: CtxDep,
    *,
    priority: Annotated[list[Priority] | None, Query(description="Displayed priority.")] = None,
    modality: Annotated[list[Modality] | None, Query(description="E.g. CT, DX.")] = None,
    status: Annotated[list[JobState] | None, Query(description="Job state.")] = None,
    received_from: Annotated[
        datetime | None, Query(description="First instance at or after (ISO 8601; UTC if naive).")
    ] = None,
    received_to: Annotated[datetime | None, Query(description="First instance before.")] = None,
    acknowledged: Annotated[bool | None, Query(description="Current result acknowledged.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 500,
) -> WorklistPage:
    """Return the worklist: most urgent displayed priority first, then longest waiting.

    Rows carry patient name, ID and accession number for display to the authenticated reader;
    every AI result is ``unverified`` until a radiologist acknowledges it.
    """
    flt = WorklistFilter(
        priorities=priority or (),
        modalities=modality or (),
        states=status or (),
        received_from=received_from,
        received_to=received_to,
        acknowledged=acknowledged,
        limit=limit,
    )
    return worklist(ctx.store, flt, now=ctx.clock())


@router.get("/{study_uid}", responses=_NOT_FOUND)
def get_study(study_uid: str, ctx: CtxDep, user: Reader, remote: RemoteDep) -> StudyDetail:
    """Return one study with findings, measurements, reasons, models, SR UID and history.

    Every read is recorded in the audit trail (``study_read``).
    """
    return read_study(ctx.store, study_uid, actor=Actor(user, remote), now=ctx.clock())


@router.get(
    "/{study_uid}/key-image.png",
    dependencies=[NEEDS_READ],
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **_NOT_FOUND},
)
def key_image(
    study_uid: str,
    images: KeyImagesDep,
    finding: Annotated[int, Query(ge=0, description="Index into the study's findings.")] = 0,
    size: Annotated[
        int, Query(ge=MIN_SIZE_PX, le=MAX_SIZE_PX, description="Longer side in pixels.")
    ] = DEFAULT_SIZE_PX,
) -> FileResponse:
    """Return a PNG of the finding with its box drawn: a nodule on the axial CT slice through its
    centre (lung window), a fracture on its radiograph. Rendered once, then served from a cache.
    """
    path = images.png(study_uid, finding, size_px=size)
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": "private, no-store"}
    )


@router.post("/{study_uid}/acknowledge", responses=_NOT_FOUND)
def acknowledge_study(
    study_uid: str, ctx: CtxDep, user: Reviewer, remote: RemoteDep
) -> WorklistRow:
    """Acknowledge the current AI result (audited); the row stops showing "unverified AI"."""
    return acknowledge(ctx.store, study_uid, actor=Actor(user, remote), now=ctx.clock())


@router.post("/{study_uid}/override", responses=_NOT_FOUND)
def override_priority(
    study_uid: str, body: OverrideRequest, ctx: CtxDep, user: Reviewer, remote: RemoteDep
) -> WorklistRow:
    """Override the displayed priority with a required reason (audited with from, to and reason).

    The AI's priority and its SR are left as produced.
    """
    return override(ctx.store, study_uid, body, actor=Actor(user, remote), now=ctx.clock())
