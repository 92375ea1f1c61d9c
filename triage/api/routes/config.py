"""Configuration (admin): the effective non-secret settings, and the versioned triage policy.

``GET /config`` shows what the service runs with, built from an allow-list of fields, so a setting
added later stays hidden until someone decides it is safe to show; the database URL has its user
info and query values masked, and no token, password or hash ever appears.

``PUT /config/policy`` replaces the *active* policy file (``<data_dir>/policy.yaml`` in the service)
with a body of the ``configs/policy.yaml`` schema. Its version must be greater than the active one,
so that the policy version written into every SR names exactly one set of thresholds. The file is
replaced atomically (fsync, rename), and each worker loads it before its next job. Every attempt
that reaches the route (accepted, refused, failed) is one ``config_change`` row in the audit trail;
requests refused earlier (401/403 by authentication, 422 by schema validation) are not.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from triage import __version__
from triage.api.context import ApiContext
from triage.api.deps import NEEDS_ADMIN, Admin, CtxDep, RemoteDep
from triage.api.errors import Conflict, NotFound
from triage.config import PolicyFile
from triage.core.errors import ModelUnavailable, TriageError
from triage.inference.card import load_card
from triage.store import audit
from triage.store.spool import write_durably

router = APIRouter(tags=["admin"])

MAX_ERROR_CHARS = 300  # a broken card's validation message, cut to stay readable
POLICY_HEADER = (
    "# Active triage policy (configs/policy.yaml schema), written by PUT /api/v1/config/policy.\n"
    "# Change it through the API so that it is audited; workers reload it before the next job.\n"
)


class ModelView(BaseModel):
    """One model folder: its card's identity, or why the card cannot be read."""

    folder: str
    name: str | None = None
    version: str | None = None
    task: str | None = None
    # the score a policy ``min_score: operating_point`` resolves to (the card's measured 1-FP
    # threshold); None when the card records none, and then such a policy leaves the task
    # NOT_ANALYSED
    operating_point: float | None = None
    error: str | None = None


class PolicyView(BaseModel):
    """The policy in force: the same shape ``PUT /config/policy`` takes, plus where it lives."""

    file: str
    editable: bool  # False: the API was given no active policy file, so PUT answers 404
    policy: PolicyFile | None
    error: str | None = None  # why the file cannot be read (then ``policy`` is null)


class ConfigView(BaseModel):
    """The effective configuration, without secrets."""

    triage_version: str
    ae_title: str
    dicom_host: str
    dicom_port: int
    http_host: str
    http_port: int
    quiet_period_s: float
    early_quiet_s: float
    workers: int
    max_attempts: int
    job_lease_s: float
    max_disk_fill: float
    max_associations: int
    runtime: str
    device: str
    database: str  # user info and query values masked
    models: list[ModelView]
    policy: PolicyView


def redact_url(url: str) -> str:
    """Return ``url`` with its user info and every query value replaced by ``***``.

    >>> redact_url("postgresql+psycopg://triage:s3cret@db:5432/triage?sslmode=require&password=x")
    'postgresql+psycopg://***@db:5432/triage?sslmode=***&password=***'
    >>> redact_url("sqlite:////data/triage.db")
    'sqlite:////data/triage.db'
    >>> redact_url("not a url")
    '***'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"  # unparseable: show nothing rather than guess where a secret ends
    rest, qsep, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    masked = "&".join(f"{part.partition('=')[0]}=***" for part in query.split("&") if part)
    return f"{scheme}://{authority}{slash}{path}{qsep}{masked}"


def read_policy_file(path: Path) -> PolicyFile:
    """Read a policy file as its schema (not the core value), to show it and compare versions.

    Raises:
        ValueError: the file is unreadable, not YAML, or does not match the schema.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"policy file must be readable YAML, got {type(e).__name__}") from e
    try:
        return PolicyFile.model_validate(raw)
    except ValidationError as e:
        where = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(f"policy file must match the schema, got errors at {where}") from None


def _models(models_dir: Path) -> list[ModelView]:
    views: list[ModelView] = []
    for card_path in sorted(models_dir.glob("*/model.yaml")) if models_dir.is_dir() else []:
        folder = card_path.parent
        try:
            card = load_card(folder)
        except ModelUnavailable as e:
            views.append(ModelView(folder=folder.name, error=str(e)[:MAX_ERROR_CHARS]))
            continue
        views.append(
            ModelView(
                folder=folder.name,
                name=card.name,
                version=card.version,
                task=card.task,
                operating_point=card.operating_point_score,
            )
        )
    return views


def _policy_view(ctx: ApiContext, configured: Path) -> PolicyView:
    """Show the active file when there is one, else the configured file the workers started with."""
    path = ctx.policy_file if ctx.policy_file is not None and ctx.policy_file.exists() else None
    path = path or configured
    editable = ctx.policy_file is not None
    try:
        return PolicyView(file=str(path), editable=editable, policy=read_policy_file(path))
    except ValueError as e:
        return PolicyView(file=str(path), editable=editable, policy=None, error=str(e))


@router.get(
    "/config",
    dependencies=[NEEDS_ADMIN],
    responses={404: {"description": "No settings given to the API."}},
)
def read_config(ctx: CtxDep) -> ConfigView:
    """Return the effective configuration: ports, timings, models and the policy in force."""
    s = ctx.settings
    if s is None:
        raise NotFound("the effective configuration must be given to the API, got no settings")
    return ConfigView(
        triage_version=__version__,
        ae_title=s.ae_title,
        dicom_host=s.dicom_host,
        dicom_port=s.dicom_port,
        http_host=s.http_host,
        http_port=s.http_port,
        quiet_period_s=s.quiet_period_s,
        early_quiet_s=s.early_quiet_s,
        workers=s.workers,
        max_attempts=s.max_attempts,
        job_lease_s=s.job_lease_s,
        max_disk_fill=s.max_disk_fill,
        max_associations=s.max_associations,
        runtime=s.runtime,
        device=s.device,
        database=redact_url(ctx.store.url),
        models=_models(s.models_dir),
        policy=_policy_view(ctx, s.policy_file),
    )


def get_policy_lock(request: Request) -> threading.Lock:
    """Return the app's policy lock: the version check and the write happen as one step."""
    lock: threading.Lock = request.app.state.policy_lock
    return lock


PolicyLock = Annotated[threading.Lock, Depends(get_policy_lock)]


def _policy_yaml(policy: PolicyFile) -> bytes:
    body = yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False)
    return (POLICY_HEADER + body).encode("utf-8")


@router.put(
    "/config/policy",
    responses={
        404: {"description": "The API was given no active policy file."},
        409: {"description": "The version is not greater than the active one."},
    },
)
def replace_policy(
    body: PolicyFile, ctx: CtxDep, user: Admin, remote: RemoteDep, lock: PolicyLock
) -> PolicyView:
    """Make ``body`` the active policy (audited as ``config_change``).

    Its version must be greater than the active file's; with no active file yet, any version is
    accepted. The workers load the new file before their next job.
    """
    path = ctx.policy_file
    if path is None:
        raise NotFound(
            "policy changes must go to an active policy file (the service uses "
            "<data_dir>/policy.yaml), got none configured for this API"
        )

    def log(outcome: str, from_version: int | None) -> None:
        audit.record(
            ctx.store,
            action="config_change",
            actor=user.user,
            role=user.role.value,
            outcome=outcome,
            remote=remote,
            now=ctx.clock(),
            detail={"what": "policy", "from_version": from_version, "to_version": body.version},
        )

    with lock:
        try:
            active = read_policy_file(path) if path.exists() else None
        except ValueError as e:
            log("refused", None)
            raise Conflict(
                f"the active policy file must be valid to compare versions, got: {e}; "
                f"fix or remove {path.name} in the data folder"
            ) from None
        from_version = None if active is None else active.version
        if active is not None and body.version <= active.version:
            log("refused", from_version)
            raise Conflict(
                f"policy version must be greater than the active version {active.version}, "
                f"got {body.version}"
            )
        try:
            write_durably(path, _policy_yaml(body))
        except OSError as e:
            log("failed", from_version)
            raise TriageError(f"the active policy file must be writable, got {e.strerror}") from e
        log("ok", from_version)
    return PolicyView(file=str(path), editable=True, policy=body)
