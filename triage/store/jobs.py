"""The job life cycle: RECEIVED → COMPLETE → QUEUED → RUNNING → DONE | NOT_ANALYSED | FAILED.

Every transition is one committed UPDATE guarded by the state it expects, so two workers (or a
worker and a restart) can never both own a job, and a crash at any point leaves a state from which
:func:`recover` resumes: a RUNNING job whose worker died is queued again (up to ``max_attempts``),
and because the SR's UID is derived from its inputs, re-running it can never produce a second SR.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from triage.core.priority import Priority
from triage.core.scheduling import OrderPriority, effective_priority
from triage.store.db import Store
from triage.store.ingest import NON_IMAGE_MODALITIES
from triage.store.schema import Instance, JobState, OutboxItem, OutboxState, Study

IMAGE_MODALITIES_2D = frozenset({"CR", "DX"})
IGNORED_MODALITIES = NON_IMAGE_MODALITIES


@dataclass(frozen=True, slots=True)
class CompletionRules:
    """When a study is complete: quiet for ``quiet_s``, or evidently complete and briefly quiet."""

    quiet_s: float = 10.0
    early_quiet_s: float = 1.0  # a series evidently complete still waits this long for stragglers
    min_ct_slices: int = 16
    spacing_tolerance: float = 0.05  # relative deviation allowed between slice steps


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker now owns: the study, its instance files, and the attempt number."""

    study_uid: str
    paths: tuple[str, ...]  # spool-relative
    attempt: int
    n_instances: int
    sr_generation: int
    previous_sr_path: str


def series_evidently_complete(
    positions_mm: Sequence[float | None],
    *,
    images_in_acquisition: int | None,
    rules: CompletionRules,
) -> bool:
    """Return True when a CT series has every slice between its first and last, evenly spaced.

    >>> r = CompletionRules(min_ct_slices=3)
    >>> series_evidently_complete([0.0, 2.5, 5.0, 7.5], images_in_acquisition=None, rules=r)
    True
    >>> series_evidently_complete([0.0, 2.5, 7.5], images_in_acquisition=None, rules=r)
    False
    """
    n = len(positions_mm)
    if images_in_acquisition is not None and images_in_acquisition > 0:
        return n >= images_in_acquisition
    known = sorted({round(p, 3) for p in positions_mm if p is not None})
    if n < rules.min_ct_slices or len(known) != n:
        return False
    steps = [b - a for a, b in zip(known, known[1:], strict=False)]
    step = sorted(steps)[len(steps) // 2]
    if step <= 0:
        return False
    return all(abs(s - step) <= rules.spacing_tolerance * step for s in steps)


def _study_evidently_complete(instances: Sequence[Instance], rules: CompletionRules) -> bool:
    series: dict[str, list[Instance]] = {}
    for inst in instances:
        if inst.modality not in IGNORED_MODALITIES:
            series.setdefault(inst.series_uid, []).append(inst)
    if not series:
        return False
    for members in series.values():
        if members[0].modality in IMAGE_MODALITIES_2D:
            continue
        expected = max((m.images_in_acquisition or 0) for m in members) or None
        positions = [m.slice_pos_mm for m in members]
        if not series_evidently_complete(positions, images_in_acquisition=expected, rules=rules):
            return False
    return True


def promote_complete(store: Store, *, now: float, rules: CompletionRules) -> list[str]:
    """Queue every RECEIVED study that is quiet, or evidently complete and briefly quiet."""
    queued: list[str] = []
    with store.session() as s:
        since = func.coalesce(Study.quiet_since, Study.last_received_at)
        waiting = s.scalars(
            select(Study).where(
                Study.state == JobState.RECEIVED.value, since <= now - rules.early_quiet_s
            )
        ).all()
        for study in waiting:
            quiet = (study.quiet_since or study.last_received_at) <= now - rules.quiet_s
            if quiet and study.n_instances == 0:
                study.state = JobState.NOT_ANALYSED.value
                study.reason = "the study has no images (only SR/PR/KO objects); nothing to analyse"
                study.effective_priority = Priority.NOT_ANALYSED.value
                study.finished_at = study.flagged_at = now
                continue
            if not quiet:
                rows = s.scalars(select(Instance).where(Instance.study_uid == study.study_uid))
                if not _study_evidently_complete(list(rows), rules):
                    continue
            study.state = JobState.COMPLETE.value
            study.completed_at = now
            queued.append(study.study_uid)
    with store.session() as s:
        s.execute(
            update(Study)
            .where(Study.study_uid.in_(queued), Study.state == JobState.COMPLETE.value)
            .values(state=JobState.QUEUED.value, reason="")
        )
    return queued


def restart_quiet(store: Store, *, now: float, grace_s: float) -> int:
    """Give every study still receiving ``grace_s`` more before its quiet period starts.

    Called when the service starts. A sender interrupted by a crash of the engine resumes on its
    own retry schedule; without this, the part received before the crash (often a run of evenly
    spaced slices that looks complete) would be analysed at once and again when the rest arrives.
    Returns the number of studies affected.
    """
    with store.session() as s:
        result = s.execute(
            update(Study)
            .where(Study.state == JobState.RECEIVED.value)
            .values(quiet_since=now + grace_s)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]  # CursorResult for DML


def claim_next(store: Store, *, worker_id: str, now: float, lease_s: float) -> ClaimedJob | None:
    """Take the most urgent queued job (queue class, then completion time), or None."""
    for _ in range(5):  # another worker may win the race for the same row
        with store.session() as s:
            study = s.scalars(
                select(Study)
                .where(Study.state == JobState.QUEUED.value)
                .order_by(Study.schedule_key, Study.completed_at, Study.study_uid)
                .limit(1)
            ).first()
            if study is None:
                return None
            attempt, generation, previous = study.attempts + 1, study.sr_generation, study.sr_path
            won = s.execute(  # type: ignore[attr-defined]  # CursorResult for DML
                update(Study)
                .where(Study.study_uid == study.study_uid, Study.state == JobState.QUEUED.value)
                .values(
                    state=JobState.RUNNING.value,
                    attempts=Study.attempts + 1,
                    started_at=now,
                    lease_owner=worker_id,
                    lease_until=now + lease_s,
                )
            ).rowcount
            if not won:
                continue
            rows = s.execute(
                select(Instance.path, Instance.modality)
                .where(Instance.study_uid == study.study_uid)
                .order_by(Instance.path)
            ).all()
            return ClaimedJob(
                study.study_uid,
                tuple(r.path for r in rows),
                attempt,
                sum(r.modality not in IGNORED_MODALITIES for r in rows),
                generation,
                previous,
            )
    return None


def recover(
    store: Store, *, now: float, max_attempts: int, all_running: bool, owner: str | None = None
) -> list[str]:
    """Re-queue jobs whose worker died; fail those out of attempts.

    Which RUNNING jobs: all of them (``all_running``, at start-up), those of one dead worker
    (``owner``), or else those whose lease expired. Returns the study UIDs that were re-queued.
    """
    requeued: list[str] = []
    with store.session() as s:
        cond = [Study.state == JobState.RUNNING.value]
        if owner is not None:
            cond.append(Study.lease_owner == owner)
        elif not all_running:
            cond.append(Study.lease_until < now)
        for study in s.scalars(select(Study).where(*cond)).all():
            if study.attempts >= max_attempts:
                study.state = JobState.FAILED.value
                study.reason = (
                    f"analysis must finish within {max_attempts} attempts, got {study.attempts}: "
                    "the worker stopped during each (crash or out of memory); see the logs"
                )
                study.finished_at = now
                study.effective_priority = Priority.NOT_ANALYSED.value
                study.flagged_at = study.flagged_at or now
            else:
                study.state = JobState.QUEUED.value
                study.reason = f"re-queued after attempt {study.attempts} was interrupted"
                requeued.append(study.study_uid)
            study.lease_owner = ""
            study.lease_until = None
    return requeued


@dataclass(frozen=True, slots=True)
class OutboxDraft:
    """An outbox item to add in the same transaction as the result (never one without the other)."""

    kind: str
    destination: str
    item_key: str
    payload: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished analysis as the store records it."""

    state: JobState  # DONE or NOT_ANALYSED
    ai_priority: Priority
    reason: str
    result: Mapping[str, object]
    sr_sop_uid: str = ""
    sr_path: str = ""
    outbox: Sequence[OutboxDraft] = ()


def finish(store: Store, job: ClaimedJob, outcome: Outcome, *, worker_id: str, now: float) -> bool:
    """Record a finished analysis if this worker still owns the job; return whether it did.

    When instances arrived during the analysis, the study goes back to RECEIVED (its result stays
    visible) so it is analysed again once quiet, and that SR replaces this one.
    """
    with store.session() as s:
        study = s.get(Study, job.study_uid, with_for_update=True)
        if study is None or study.state != JobState.RUNNING.value:
            return False
        if study.lease_owner != worker_id:
            return False
        order = OrderPriority(study.order_priority)
        study.ai_priority = outcome.ai_priority.value
        study.effective_priority = effective_priority(order, outcome.ai_priority).value
        study.result_json = json.dumps(outcome.result)
        study.reason = outcome.reason
        if outcome.sr_sop_uid:
            if outcome.sr_sop_uid != study.sr_sop_uid:
                study.sr_generation += 1
            study.sr_sop_uid = outcome.sr_sop_uid
            study.sr_path = outcome.sr_path
        study.finished_at = now
        study.flagged_at = now  # this result's priority is visible from now (time-to-flag)
        study.lease_owner = ""
        study.lease_until = None
        _add_outbox(s, job.study_uid, outcome.outbox, now=now)
        study.analysed_instances = job.n_instances
        late = study.n_instances > job.n_instances
        study.state = JobState.RECEIVED.value if late else outcome.state.value
    return True


def fail(
    store: Store, study_uid: str, reason: str, *, worker_id: str, now: float, retry: bool
) -> None:
    """Record a system failure: queued again when ``retry``, else FAILED (never routine)."""
    with store.session() as s:
        study = s.get(Study, study_uid, with_for_update=True)
        if study is None or study.lease_owner != worker_id:
            return
        study.reason = reason
        study.lease_owner = ""
        study.lease_until = None
        if retry:
            study.state = JobState.QUEUED.value
            return
        study.state = JobState.FAILED.value
        study.finished_at = now
        study.effective_priority = effective_priority(
            OrderPriority(study.order_priority), Priority.NOT_ANALYSED
        ).value
        study.flagged_at = study.flagged_at or now


def _add_outbox(s: Session, study_uid: str, drafts: Sequence[OutboxDraft], *, now: float) -> None:
    for d in drafts:
        exists = s.scalars(
            select(OutboxItem.id).where(
                OutboxItem.kind == d.kind,
                OutboxItem.destination == d.destination,
                OutboxItem.item_key == d.item_key,
            )
        ).first()
        if exists is None:
            s.add(
                OutboxItem(
                    study_uid=study_uid,
                    kind=d.kind,
                    destination=d.destination,
                    item_key=d.item_key,
                    payload=d.payload,
                    state=OutboxState.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
