"""The worker on a real store and spool: spooled study in → result, SR and outbox rows out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from triage.cli import build_engine
from triage.config import Settings
from triage.dicom.selection import Task
from triage.pipeline import Engine, TaskModel
from triage.store import jobs
from triage.store.db import Store, migrate
from triage.store.ingest import accept
from triage.store.jobs import CompletionRules
from triage.store.schema import JobState, OutboxItem, Study
from triage.store.spool import Spool
from triage.synth.studies import make_dr_study
from triage.worker import WorkerSetup, process_one

pytestmark = [pytest.mark.integration, pytest.mark.torch]
NOW_RULES = CompletionRules(quiet_s=0.0, early_quiet_s=0.0)


@pytest.fixture
def service(tmp_path: Path) -> tuple[Store, Spool, WorkerSetup]:
    store = Store(f"sqlite:///{tmp_path / 'triage.db'}")
    migrate(store.engine)
    spool = Spool(tmp_path / "spool")
    setup = WorkerSetup(
        store_url=store.url,
        spool_root=spool.root,
        outputs_dir=tmp_path / "outputs",
        worker_id="w1",
        max_attempts=2,
        sr_destinations=("pacs",),
        flag_targets=("pacs",),
    )
    return store, spool, setup


def _spool_folder(folder: Path, store: Store, spool: Spool) -> str:
    uid = ""
    for p in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        accept(p.read_bytes(), ds, store=store, spool=spool, source="test", now=1.0)
        uid = str(ds.StudyInstanceUID)
    jobs.promote_complete(store, now=2.0, rules=NOW_RULES)
    return uid


def _row(store: Store, uid: str) -> Study:
    with store.session() as s:
        row = s.get(Study, uid)
        assert row is not None
        return row


def test_worker_analyses_a_spooled_radiograph_and_queues_write_back(
    service: tuple[Store, Spool, WorkerSetup], tiny_models_dir: Path, tmp_path: Path
) -> None:
    store, spool, setup = service
    study = make_dr_study(tmp_path / "in", 3, kind="limb", n_fractures=1)
    uid = _spool_folder(study.study_dir, store, spool)
    engine = build_engine(Settings(models_dir=tiny_models_dir))
    assert process_one(store, engine, setup, clock=lambda: 10.0)
    assert not process_one(store, engine, setup, clock=lambda: 11.0)  # queue empty
    row = _row(store, uid)
    assert row.state in (JobState.DONE, JobState.NOT_ANALYSED)
    assert row.state == JobState.DONE, row.reason
    assert row.sr_sop_uid
    assert row.flagged_at == 10.0
    sr = pydicom.dcmread(row.sr_path)
    assert str(sr.SOPInstanceUID) == row.sr_sop_uid
    assert str(sr.StudyInstanceUID) == uid
    assert (Path(row.sr_path).parent / "summary.json").is_file()
    with store.session() as s:
        kinds = sorted((o.kind, o.item_key) for o in s.scalars(select(OutboxItem)))
    assert kinds == [("flag", f"{row.sr_sop_uid}|{row.ai_priority}"), ("sr", row.sr_sop_uid)]


def test_truncated_series_ends_not_analysed_with_reason_and_an_sr(
    service: tuple[Store, Spool, WorkerSetup], tiny_models_dir: Path, shared_data: Path
) -> None:
    store, spool, setup = service
    uid = _spool_folder(shared_data / "lidc-idri-0001-subset16", store, spool)
    engine = build_engine(Settings(models_dir=tiny_models_dir))
    assert process_one(store, engine, setup, clock=lambda: 10.0)
    row = _row(store, uid)
    assert row.state == JobState.NOT_ANALYSED
    assert "fewer than 40" in row.reason
    assert row.effective_priority == "not_analysed"
    assert row.sr_sop_uid  # the PACS still gets a report saying why


class _CrashingRuntime:
    """A runtime that fails like an out-of-memory inference (a fake adapter, not a mock)."""

    provider = "CPUExecutionProvider"

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise MemoryError("simulated out of memory")


def test_model_crash_is_retried_then_failed_never_routine(
    service: tuple[Store, Spool, WorkerSetup], tiny_models_dir: Path, tmp_path: Path
) -> None:
    store, spool, setup = service
    study = make_dr_study(tmp_path / "in", 4, kind="chest", n_fractures=0)
    uid = _spool_folder(study.study_dir, store, spool)
    real = build_engine(Settings(models_dir=tiny_models_dir))
    card = real.models[Task.FRACTURE].card
    crashing = Engine(
        models={**real.models, Task.FRACTURE: TaskModel(card, _CrashingRuntime())},
        rules=real.rules,
        policy=real.policy,
    )
    assert process_one(store, crashing, setup, clock=lambda: 10.0)
    assert _row(store, uid).state == JobState.QUEUED  # attempt 1 of 2: retried
    assert process_one(store, crashing, setup, clock=lambda: 11.0)
    row = _row(store, uid)
    assert row.state == JobState.FAILED
    assert "MemoryError" in row.reason
    assert row.effective_priority == "not_analysed"
    with store.session() as s:
        assert s.scalars(select(OutboxItem)).all() == []


def test_late_images_reanalyse_and_the_new_sr_names_the_old_as_predecessor(
    service: tuple[Store, Spool, WorkerSetup], tiny_models_dir: Path, lidc_dir: Path
) -> None:
    store, spool, setup = service
    files = sorted(lidc_dir.rglob("*.dcm"))
    engine = build_engine(Settings(models_dir=tiny_models_dir))
    for p in files[:20]:  # a truncated first delivery: NOT_ANALYSED, with an SR saying why
        accept(p.read_bytes(), pydicom.dcmread(p), store=store, spool=spool, source="t", now=1.0)
    jobs.promote_complete(store, now=20.0, rules=NOW_RULES)
    assert process_one(store, engine, setup, clock=lambda: 21.0)
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    first = _row(store, uid)
    assert first.state == JobState.NOT_ANALYSED
    for p in files[20:]:  # the rest arrives late
        accept(p.read_bytes(), pydicom.dcmread(p), store=store, spool=spool, source="t", now=30.0)
    assert _row(store, uid).state == JobState.RECEIVED
    jobs.promote_complete(store, now=40.0, rules=NOW_RULES)
    assert process_one(store, engine, setup, clock=lambda: 41.0)
    second = _row(store, uid)
    assert second.state == JobState.DONE
    assert second.sr_sop_uid != first.sr_sop_uid
    assert second.sr_generation == 2
    sr = pydicom.dcmread(second.sr_path)
    (study_ref,) = sr.PredecessorDocumentsSequence
    refs = [
        str(i.ReferencedSOPInstanceUID)
        for s in study_ref.ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    ]
    assert refs == [first.sr_sop_uid]
    with store.session() as s:
        sr_items = s.scalars(select(OutboxItem).where(OutboxItem.kind == "sr")).all()
    assert sorted(i.item_key for i in sr_items) == sorted([first.sr_sop_uid, second.sr_sop_uid])


def test_a_gpu_crash_is_retried_on_the_cpu_engine_within_the_same_attempt(
    service: tuple[Store, Spool, WorkerSetup], tiny_models_dir: Path, tmp_path: Path
) -> None:
    store, spool, setup = service
    study = make_dr_study(tmp_path / "in", 5, kind="limb", n_fractures=1)
    uid = _spool_folder(study.study_dir, store, spool)
    cpu = build_engine(Settings(models_dir=tiny_models_dir))
    card = cpu.models[Task.FRACTURE].card
    gpu_like = Engine(  # stands in for a CUDA engine that runs out of memory
        models={**cpu.models, Task.FRACTURE: TaskModel(card, _CrashingRuntime())},
        rules=cpu.rules,
        policy=cpu.policy,
    )
    assert process_one(store, gpu_like, setup, clock=lambda: 10.0, cpu_fallback=lambda: cpu)
    row = _row(store, uid)
    assert row.state == JobState.DONE
    assert row.attempts == 1
    assert row.sr_sop_uid
