"""Request and response models of the HTTP API (pydantic at the boundary only, STYLE H5).

These shapes are the contract with integrators and with the worklist page; they are built from
store rows in ``worklist.py`` and never used as domain types. Times are UTC seconds since the epoch
(``*_at``) or durations in seconds (``*_s``), as in the store.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triage.core.priority import Priority
from triage.store.audit import AuditRecord

OverridePriority = Literal["stat", "urgent", "routine"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class FindingSummary(_Out):
    """One finding in a worklist row: enough to read the list, not to measure."""

    index: int = Field(description="Position in the study's findings; key images use it.")
    type: str = Field(description='"nodule" or "fracture".')
    label: str
    score: float = Field(description="Model confidence 0..1 (not a probability of disease).")
    text: str = Field(description='Readable summary, e.g. "nodule 9.2 mm, Lung-RADS 4A, 0.87".')


class ModelRef(_Out):
    """A model that produced the result (from the SR's algorithm identification)."""

    name: str
    version: str


class WorklistRow(_Out):
    """One study on the worklist."""

    study_uid: str
    priority: Priority = Field(description="What the radiologist sees: override, else effective.")
    effective_priority: Priority = Field(description="Order priority raised (never lowered) by AI.")
    ai_priority: Priority | None = Field(description="The AI's priority; null until analysed.")
    order_priority: str
    overridden: bool
    state: str = Field(description="Job state: received, complete, queued, running, done, ...")
    reason: str = Field(description="Why the study has its priority or state, for a person.")
    waiting_s: float = Field(description="Seconds since the last instance arrived.")
    received_at: float = Field(description="When the last instance arrived.")
    first_received_at: float
    finished_at: float | None
    findings: list[FindingSummary]
    findings_summary: str
    models: list[ModelRef]
    sr_sop_uid: str | None
    acknowledged: bool = Field(description="A radiologist acknowledged the current AI result.")
    acknowledged_by: str | None
    acknowledged_at: float | None
    unverified: bool = Field(description="True until a radiologist acknowledges the AI result.")
    patient_name: str = Field(description="For display to authenticated users only.")
    patient_id: str
    accession_number: str
    study_description: str
    study_date: str
    modalities: list[str]


class WorklistPage(_Out):
    """The worklist, most urgent first, then longest waiting."""

    now: float = Field(description="Server time the waiting times were computed at.")
    count: int
    studies: list[WorklistRow]


class Measurement(_Out):
    """One named measurement of a finding."""

    name: str
    value: float
    unit: str


class FindingDetail(_Out):
    """A finding with its geometry and measurements, as the result JSON holds it."""

    index: int
    type: str
    label: str
    score: float
    measurements: list[Measurement]
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    center_lps_mm: list[float] | None = None
    lung_rads_size_category: str | None = None
    box_ijk: dict[str, list[float]] | None = Field(
        None, description="CT voxel box {min, max} as (i=column, j=row, k=slice)."
    )
    box_col_row_px: dict[str, list[float]] | None = Field(
        None, description="Radiograph box {min, max} as (column, row) pixels, SCOORD corners."
    )
    key_image_url: str


class TaskDetail(_Out):
    """What one analysis task did."""

    task: str
    series_uid: str | None
    status: str
    reason: str | None
    seconds: float | None
    provider: str


class AuditEntry(_Out):
    """One audit row."""

    at: float
    actor: str
    role: str
    action: str
    study_uid: str
    outcome: str
    remote: str
    detail: dict[str, object]

    @classmethod
    def from_record(cls, r: AuditRecord) -> AuditEntry:
        """Return the response form of one stored audit row."""
        return cls(
            at=r.at, actor=r.actor, role=r.role, action=r.action, study_uid=r.study_uid,
            outcome=r.outcome, remote=r.remote, detail=dict(r.detail),
        )  # fmt: skip


class StudyDetail(WorklistRow):
    """A study with everything the worklist row has, plus measurements, reasons and history."""

    reasons: list[str]
    policy_version: int | None
    finding_details: list[FindingDetail]
    tasks: list[TaskDetail]
    override_priority: Priority | None
    override_reason: str
    override_by: str
    history: list[AuditEntry] = Field(description="Acknowledgements and overrides, newest first.")


class OverrideRequest(BaseModel):
    """A radiologist's priority override; the reason is required and goes into the audit trail."""

    model_config = ConfigDict(extra="forbid")
    priority: OverridePriority
    reason: str = Field(max_length=500, description="Why; never a patient name or ID.")

    @field_validator("reason")
    @classmethod
    def _reason_not_blank(cls, value: str) -> str:
        text = value.strip()
        if not text:
            raise ValueError("reason must be a non-empty explanation, got a blank string")
        return text


class WhoAmI(_Out):
    """The caller as the token identifies it."""

    user: str
    role: str
    rights: list[str]


class OutboxEntry(_Out):
    """One item to deliver to another system."""

    id: int
    study_uid: str
    kind: str
    destination: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str
    created_at: float
    delivered_at: float | None


class OutboxPage(_Out):
    """Outbox items (newest first) and the number per state."""

    counts: dict[str, int]
    items: list[OutboxEntry]


class HealthCheck(_Out):
    """One readiness check."""

    ok: bool
    detail: str


class HealthReport(_Out):
    """Liveness or readiness; ``checks`` names each failing check and why."""

    status: Literal["ok", "fail"]
    checks: dict[str, HealthCheck] = Field(default_factory=dict)
