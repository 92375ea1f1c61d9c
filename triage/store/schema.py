"""The tables of the service's one store: instances, studies (jobs + worklist), outbox, audit.

One row per study is both the job and the worklist entry, so the two can never disagree. Times are
UTC seconds since the epoch (floats): the same type and ordering on SQLite and PostgreSQL. Patient
name and ID are kept for the worklist page only; no code path logs them (STYLE H22).

Changing a table means adding an Alembic revision in ``triage/store/migrations/versions``; a test
compares these tables with the migrated database and fails on any drift.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every table here."""


class JobState(StrEnum):
    """Where a study is on its way from first instance to priority flag."""

    RECEIVED = "received"  # instances arriving; waiting for the quiet period
    COMPLETE = "complete"  # judged complete; about to be queued
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    NOT_ANALYSED = "not_analysed"  # analysed, but no task could run (reason says why)
    FAILED = "failed"  # the system failed (model crash, too many attempts); reason says why


FINISHED_STATES = frozenset({JobState.DONE, JobState.NOT_ANALYSED, JobState.FAILED})


class OutboxState(StrEnum):
    """Delivery state of one outbound item."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # gave up after the configured attempts; visible and re-triable by an admin


class Instance(Base):
    """One received SOP instance, durable in the spool before it was acknowledged."""

    __tablename__ = "instances"
    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(16), default="")
    path: Mapped[str] = mapped_column(String(255))  # relative to the spool root; hashed names
    size_bytes: Mapped[int] = mapped_column(Integer)
    slice_pos_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_in_acquisition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(80))  # "dimse:<AE>", "stow:<user>", "pull:<node>"
    received_at: Mapped[float] = mapped_column(Float)


class Study(Base):
    """A study as a job (state, attempts, lease) and as a worklist row (priority, findings)."""

    __tablename__ = "studies"
    study_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid_hash: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.RECEIVED.value, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    order_priority: Mapped[str] = mapped_column(String(16), default="routine")
    schedule_key: Mapped[int] = mapped_column(Integer, default=21)
    modalities: Mapped[str] = mapped_column(String(64), default="")  # "CT,SR"
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    analysed_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[float] = mapped_column(Float)
    last_received_at: Mapped[float] = mapped_column(Float)
    # Last sign that the study is still being sent (a new or a re-sent instance, or a restart of
    # the service); the quiet period counts from here. None before revision 0002.
    quiet_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    flagged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    ai_priority: Mapped[str | None] = mapped_column(String(16), nullable=True)
    effective_priority: Mapped[str] = mapped_column(String(16), default="routine", index=True)
    result_json: Mapped[str] = mapped_column(Text, default="")
    sr_sop_uid: Mapped[str] = mapped_column(String(64), default="")
    sr_path: Mapped[str] = mapped_column(String(255), default="")
    sr_generation: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_by: Mapped[str] = mapped_column(String(64), default="")
    acknowledged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    override_priority: Mapped[str | None] = mapped_column(String(16), nullable=True)
    override_reason: Mapped[str] = mapped_column(Text, default="")
    override_by: Mapped[str] = mapped_column(String(64), default="")
    # Shown to authenticated radiologists on the worklist; never logged, never in error messages.
    patient_name: Mapped[str] = mapped_column(String(128), default="")
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    study_description: Mapped[str] = mapped_column(String(128), default="")
    study_date: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(String(80), default="")


Index("ix_studies_queue", Study.state, Study.schedule_key, Study.completed_at)


class OutboxItem(Base):
    """One thing to deliver to another system (an SR to a PACS, a priority flag), exactly once."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("kind", "destination", "item_key", name="uq_outbox_item"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "sr" | "flag"
    destination: Mapped[str] = mapped_column(String(64))  # node name from the nodes file
    item_key: Mapped[str] = mapped_column(String(128))  # SR SOP UID, or "<study>|<generation>"
    payload: Mapped[str] = mapped_column(Text)  # spool-relative SR path, or JSON for a flag
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(Float)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEvent(Base):
    """Who did what to which study, and when: reads, acknowledgements, overrides, rejections."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # user name, calling AE title, or "system"
    role: Mapped[str] = mapped_column(String(32), default="")
    action: Mapped[str] = mapped_column(String(48), index=True)
    study_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    remote: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON; never patient names or IDs


class Watermark(Base):
    """How far polling a PACS node has got, so a restart neither misses nor repeats studies."""

    __tablename__ = "watermarks"
    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[float] = mapped_column(Float)
