"""The store's life cycle on a real SQLite file: migrations, ingest, completion, claims, outbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydicom import dcmread
from sqlalchemy import select, text

from tests.factories import make_ct_series as _make_ct_dir
from tests.factories import make_radiograph
from tests.postgres import PostgresServer
from triage.core.priority import Priority
from triage.store import jobs, outbox
from triage.store.db import Store, migrate
from triage.store.ingest import IngestPolicy, InvalidInstance, OutOfResources, accept
from triage.store.jobs import CompletionRules, OutboxDraft, Outcome
from triage.store.schema import Base, Instance, JobState, OutboxItem, Study
from triage.store.spool import TEMP_SUFFIX, Spool


def make_ct_series(directory: Path, n: int, **kw: object) -> list[Path]:
    """Write a synthetic CT series and return its files in slice order."""
    return sorted(_make_ct_dir(directory, n, **kw).glob("*.dcm"))  # type: ignore[arg-type]


RULES = CompletionRules(quiet_s=10.0, early_quiet_s=1.0, min_ct_slices=4)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for this module's PostgreSQL runs."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same store code on SQLite (embedded default) and on a real PostgreSQL."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'triage.db'}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        s = Store(server.url)
        with s.engine.begin() as conn:  # each test starts from an empty schema
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate(s.engine)
    yield s
    s.close()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def _ingest(paths: list[Path], store: Store, spool: Spool, *, now: float, **kw: object) -> None:
    for p in paths:
        accept(p.read_bytes(), dcmread(p), store=store, spool=spool, source="test", now=now, **kw)


def _study(store: Store, uid: str) -> Study:
    with store.session() as s:
        row = s.get(Study, uid)
        assert row is not None
        return row


def test_migrations_create_exactly_the_declared_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"schema.py and the migrations differ; add an Alembic revision: {diff}"


def test_migrate_twice_is_harmless(store: Store) -> None:
    migrate(store.engine)


def test_ingest_writes_hashed_files_and_is_idempotent(tmp_path: Path, store: Store, spool: Spool):
    paths = make_ct_series(tmp_path / "ct", 5)
    _ingest(paths, store, spool, now=100.0)
    _ingest(paths, store, spool, now=101.0)
    with store.session() as s:
        rows = s.scalars(select(Instance)).all()
        studies = s.scalars(select(Study)).all()
    assert len(rows) == 5
    assert len(studies) == 1
    assert studies[0].n_instances == 5
    assert studies[0].last_received_at == 100.0  # a re-sent instance is not a new image ...
    assert studies[0].quiet_since == 101.0  # ... but shows the study is still being sent
    files = sorted(p for p in spool.root.rglob("*") if p.is_file())
    assert len(files) == 5
    uid = studies[0].study_uid
    assert all(uid not in str(f) and f.suffix == ".dcm" for f in files)
    assert not list(spool.root.rglob(f"*{TEMP_SUFFIX}"))


def test_ingest_refuses_when_disk_above_threshold_and_writes_nothing(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    paths = make_ct_series(tmp_path / "ct", 1)
    with pytest.raises(OutOfResources, match="full"):
        _ingest(paths, store, spool, now=1.0, policy=IngestPolicy(max_disk_fill=1e-6))
    with store.session() as s:
        assert s.scalars(select(Instance)).all() == []
    assert not [p for p in spool.root.rglob("*") if p.is_file()]


def test_ingest_rejects_instance_without_uid(tmp_path: Path, store: Store, spool: Spool) -> None:
    path = make_ct_series(tmp_path / "ct", 1)[0]
    ds = dcmread(path)
    del ds.SOPInstanceUID
    with pytest.raises(InvalidInstance, match="SOPInstanceUID must be a valid DICOM UID"):
        accept(path.read_bytes(), ds, store=store, spool=spool, source="t", now=1.0)


def test_stat_order_and_emergency_location_set_the_queue_class(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    ct = make_ct_series(tmp_path / "ct", 4)
    dx = make_radiograph(tmp_path / "dx.dcm")
    ds = dcmread(dx)
    ds.RequestedProcedurePriority = "STAT"
    ds.save_as(dx)
    _ingest(ct, store, spool, now=1.0)
    _ingest([dx], store, spool, now=2.0)
    routine_ct = _study(store, str(dcmread(ct[0]).StudyInstanceUID))
    stat_dx = _study(store, str(ds.StudyInstanceUID))
    assert stat_dx.order_priority == "stat"
    assert stat_dx.effective_priority == "stat"
    assert routine_ct.order_priority == "routine"
    assert stat_dx.schedule_key < routine_ct.schedule_key


def test_quiet_period_and_evident_completeness(tmp_path: Path, store: Store, spool: Spool) -> None:
    gappy = make_ct_series(tmp_path / "gap", 6, missing=[3])
    full = make_ct_series(tmp_path / "full", 6)
    _ingest(gappy, store, spool, now=100.0)
    _ingest(full, store, spool, now=100.0)
    assert jobs.promote_complete(store, now=100.5, rules=RULES) == []  # nothing is briefly quiet
    early = jobs.promote_complete(store, now=101.5, rules=RULES)
    assert early == [str(dcmread(full[0]).StudyInstanceUID)]
    late = jobs.promote_complete(store, now=110.5, rules=RULES)
    assert late == [str(dcmread(gappy[0]).StudyInstanceUID)]
    assert _study(store, late[0]).state == JobState.QUEUED


def _finish(store: Store, job: jobs.ClaimedJob, priority: Priority, **kw: object) -> bool:
    outcome = Outcome(JobState.DONE, priority, "", {"findings": []}, **kw)  # type: ignore[arg-type]
    return jobs.finish(store, job, outcome, worker_id="w1", now=200.0)


def test_claims_follow_queue_class_then_completion_time(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    first_ct = make_ct_series(tmp_path / "a", 4)
    second_ct = make_ct_series(tmp_path / "b", 4)
    dx = make_radiograph(tmp_path / "dx.dcm")
    _ingest(first_ct, store, spool, now=1.0)
    _ingest(second_ct, store, spool, now=2.0)
    _ingest([dx], store, spool, now=3.0)
    jobs.promote_complete(store, now=50.0, rules=RULES)
    order = []
    while (job := jobs.claim_next(store, worker_id="w1", now=60.0, lease_s=30)) is not None:
        order.append(job.study_uid)
        assert _finish(store, job, Priority.ROUTINE)
    uid = lambda p: str(dcmread(p).StudyInstanceUID)  # noqa: E731
    assert order[0] == uid(dx)  # radiographs before CT when both wait
    assert set(order[1:]) == {uid(first_ct[0]), uid(second_ct[0])}


def test_workers_claiming_at_once_take_every_job_exactly_once(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    """Several workers racing for the queue (threads here, processes in the service)."""
    studies = [make_radiograph(tmp_path / f"s{i}" / "dx.dcm") for i in range(16)]  # 16 studies
    _ingest(studies, store, spool, now=1.0)
    assert len(jobs.promote_complete(store, now=50.0, rules=RULES)) == len(studies)
    start = threading.Barrier(6)

    def worker(name: str) -> list[str]:
        start.wait()
        taken = []
        while (job := jobs.claim_next(store, worker_id=name, now=60.0, lease_s=30)) is not None:
            taken.append(job.study_uid)
        return taken

    with ThreadPoolExecutor(max_workers=6) as pool:
        claimed = [uid for run in pool.map(worker, [f"w{i}" for i in range(6)]) for uid in run]
    assert sorted(claimed) == sorted(str(dcmread(p).StudyInstanceUID) for p in studies)
    with store.session() as s:
        owners = s.scalars(select(Study.lease_owner)).all()
    assert all(o is not None for o in owners)


def test_ai_never_lowers_the_order_priority(tmp_path: Path, store: Store, spool: Spool) -> None:
    dx = make_radiograph(tmp_path / "dx.dcm")
    ds = dcmread(dx)
    ds.RequestedProcedurePriority = "STAT"
    ds.save_as(dx)
    _ingest([dx], store, spool, now=1.0)
    jobs.promote_complete(store, now=20.0, rules=RULES)
    job = jobs.claim_next(store, worker_id="w1", now=21.0, lease_s=30)
    assert job is not None
    assert _finish(store, job, Priority.ROUTINE)
    row = _study(store, job.study_uid)
    assert (row.ai_priority, row.effective_priority, row.state) == ("routine", "stat", "done")


def test_interrupted_job_is_requeued_then_failed_after_max_attempts(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    _ingest(make_ct_series(tmp_path / "a", 4), store, spool, now=1.0)
    jobs.promote_complete(store, now=20.0, rules=RULES)
    for attempt in (1, 2):
        job = jobs.claim_next(store, worker_id="w1", now=21.0, lease_s=30)
        assert job is not None
        assert job.attempt == attempt
        assert jobs.recover(store, now=22.0, max_attempts=2, all_running=True) == (
            [job.study_uid] if attempt < 2 else []
        )
    row = _study(store, job.study_uid)
    assert row.state == JobState.FAILED
    assert "within 2 attempts" in row.reason
    assert row.effective_priority == Priority.NOT_ANALYSED  # never silently routine


def test_stale_worker_cannot_overwrite_a_reclaimed_job(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    _ingest(make_ct_series(tmp_path / "a", 4), store, spool, now=1.0)
    jobs.promote_complete(store, now=20.0, rules=RULES)
    stale = jobs.claim_next(store, worker_id="w1", now=21.0, lease_s=1)
    assert stale is not None
    assert jobs.recover(store, now=30.0, max_attempts=5, all_running=False) == [stale.study_uid]
    fresh = jobs.claim_next(store, worker_id="w2", now=31.0, lease_s=30)
    assert fresh is not None
    assert not _finish(store, stale, Priority.URGENT)  # w1 lost its lease
    assert _study(store, stale.study_uid).state == JobState.RUNNING


def test_late_instance_sends_study_back_for_reanalysis(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    paths = make_ct_series(tmp_path / "a", 6)
    _ingest(paths[:5], store, spool, now=1.0)
    jobs.promote_complete(store, now=20.0, rules=RULES)
    job = jobs.claim_next(store, worker_id="w1", now=21.0, lease_s=30)
    assert job is not None
    _ingest(paths[5:], store, spool, now=22.0)  # arrives while the job runs
    assert _finish(store, job, Priority.ROUTINE, sr_sop_uid="2.25.1", sr_path="/x")
    row = _study(store, job.study_uid)
    assert row.state == JobState.RECEIVED
    assert row.ai_priority == "routine"
    assert row.sr_generation == 1


def test_outbox_items_commit_with_the_result_once(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    _ingest(make_ct_series(tmp_path / "a", 4), store, spool, now=1.0)
    draft = OutboxDraft("sr", "pacs", "2.25.7", "/sr.dcm")
    for _ in range(2):  # the same job finished twice (a re-run after a crash)
        jobs.promote_complete(store, now=20.0, rules=CompletionRules(quiet_s=0, early_quiet_s=0))
        with store.session() as s:
            s.get(Study, _only_uid(store)).state = JobState.QUEUED.value  # type: ignore[union-attr]
        job = jobs.claim_next(store, worker_id="w1", now=21.0, lease_s=30)
        assert job is not None
        assert _finish(store, job, Priority.URGENT, sr_sop_uid="2.25.7", outbox=[draft])
    with store.session() as s:
        items = s.scalars(select(OutboxItem)).all()
    assert [(i.kind, i.destination, i.item_key) for i in items] == [("sr", "pacs", "2.25.7")]
    assert _study(store, job.study_uid).sr_generation == 1


def _only_uid(store: Store) -> str:
    with store.session() as s:
        return s.scalars(select(Study.study_uid)).one()


def test_outbox_backs_off_then_goes_dead_and_can_be_retried(store: Store) -> None:
    assert outbox.enqueue(store, study_uid="1.2", kind="sr", destination="pacs",
                          item_key="2.25.1", payload="p", now=0.0)  # fmt: skip
    assert not outbox.enqueue(store, study_uid="1.2", kind="sr", destination="pacs",
                              item_key="2.25.1", payload="p", now=0.0)  # fmt: skip
    policy = outbox.RetryPolicy(max_attempts=3, base_s=10, max_delay_s=100)
    (item,) = outbox.due(store, now=0.0)
    assert outbox.failed(store, item.id, "refused", now=0.0, retry=policy) == "pending"
    assert outbox.due(store, now=5.0) == []  # backing off
    assert outbox.due(store, now=10.0) != []
    outbox.failed(store, item.id, "refused", now=10.0, retry=policy)
    assert outbox.failed(store, item.id, "refused", now=40.0, retry=policy) == "dead"
    assert outbox.counts(store) == {"dead": 1}
    assert outbox.retry_dead(store, item.id, now=50.0)
    (again,) = outbox.due(store, now=50.0)
    outbox.delivered(store, again.id, now=51.0)
    assert outbox.counts(store) == {"delivered": 1}
    assert json.dumps(outbox.counts(store))


def test_a_restart_gives_a_half_received_study_a_full_quiet_period(
    tmp_path: Path, store: Store, spool: Spool
) -> None:
    paths = make_ct_series(tmp_path / "a", 6)
    _ingest(paths[:3], store, spool, now=100.0)  # then the engine crashed; restarted at 500
    assert jobs.restart_quiet(store, now=500.0, grace_s=30.0) == 1
    assert jobs.promote_complete(store, now=525.0, rules=RULES) == []  # sender may resume
    _ingest(paths[:3], store, spool, now=526.0)  # the PACS re-sends from the start ...
    assert jobs.promote_complete(store, now=535.0, rules=RULES) == []  # grace not shortened
    _ingest(paths[3:], store, spool, now=536.0)  # ... and the rest follows
    (uid,) = jobs.promote_complete(store, now=540.0, rules=RULES)  # complete, 1 s quiet
    assert _study(store, uid).n_instances == 6  # analysed once, complete
