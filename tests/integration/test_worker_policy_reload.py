"""Workers pick up a policy changed through the API: the next job runs with the new version, and a
broken policy file never stops a worker or loosens the policy in force."""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
import time
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from tests.integration.api.support import FakeClock, Flag, auth, make_context
from triage.api.app import create_app
from triage.api.auth import Role
from triage.api.context import ApiContext
from triage.cli import build_engine
from triage.config import REPO_ROOT, Settings, load_policy
from triage.pipeline import Engine
from triage.service import install_policy
from triage.store import jobs
from triage.store.ingest import accept
from triage.store.jobs import CompletionRules
from triage.store.schema import JobState, Study
from triage.store.spool import write_durably
from triage.synth.studies import make_dr_study
from triage.worker import PolicyWatch, WorkerSetup, run_worker

pytestmark = pytest.mark.integration
CONFIGURED_POLICY = REPO_ROOT / "configs" / "policy.yaml"
NOW_RULES = CompletionRules(quiet_s=0.0, early_quiet_s=0.0)


def _policy_yaml(version: int) -> bytes:
    return f"version: {version}\nlung_nodule: {{urgent_diameter_mm: 6.0}}\n".encode()


def _engine_without_models(tmp_path: Path) -> Engine:
    return build_engine(Settings(_env_file=None, models_dir=tmp_path / "no-models"))


def test_policy_watch_loads_each_new_version_of_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    write_durably(path, _policy_yaml(4))
    watch = PolicyWatch(path, load_policy)
    engine = _engine_without_models(tmp_path)
    loaded = watch.apply(engine)
    assert loaded.policy.version == 4
    assert loaded.policy.lung_nodule.urgent_diameter_mm == 6.0
    assert watch.apply(loaded) is loaded  # unchanged file: no reload
    write_durably(path, _policy_yaml(5))
    assert watch.apply(loaded).policy.version == 5
    assert loaded.models == engine.models  # only the policy changes


def test_policy_watch_keeps_the_policy_in_force_when_the_file_is_missing_or_broken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    engine = _engine_without_models(tmp_path)
    watch = PolicyWatch(path, load_policy)
    assert watch.apply(engine) is engine  # no file yet
    write_durably(path, b"version: 0\n")  # fails the schema (version >= 1)
    assert watch.apply(engine) is engine
    write_durably(path, b"version: [unclosed\n")  # not even YAML
    assert watch.apply(engine) is engine
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == [
        "active policy file unusable; keeping the policy in force"
    ] * 2
    write_durably(path, _policy_yaml(3))
    assert watch.apply(engine).policy.version == 3


def test_worker_setup_with_a_policy_loader_pickles_for_spawned_workers(tmp_path: Path) -> None:
    setup = WorkerSetup(
        store_url="sqlite://",
        spool_root=tmp_path,
        outputs_dir=tmp_path,
        worker_id="w1",
        policy_file=tmp_path / "policy.yaml",
        policy_loader=load_policy,
    )
    assert pickle.loads(pickle.dumps(setup)) == setup


def _queue_study(ctx: ApiContext, out: Path, seed: int) -> str:
    study = make_dr_study(out, seed, kind="limb", n_fractures=1)
    uid = ""
    for p in sorted(study.study_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        accept(p.read_bytes(), ds, store=ctx.store, spool=ctx.spool, source="test", now=1.0)
        uid = str(ds.StudyInstanceUID)
    assert uid in jobs.promote_complete(ctx.store, now=2.0, rules=NOW_RULES)
    return uid


def _policy_version_when_done(ctx: ApiContext, uid: str, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with ctx.store.session() as s:
            row = s.get(Study, uid)
            assert row is not None
            if row.state not in (JobState.QUEUED, JobState.RUNNING):
                assert row.state == JobState.DONE, row.reason
                version: int = json.loads(row.result_json)["policy_version"]
                return version
        time.sleep(0.1)
    raise AssertionError(f"study must be analysed within {timeout_s} s, got none")


@pytest.mark.torch
def test_worker_runs_the_next_job_with_a_policy_put_through_the_api(
    tmp_path: Path, tiny_models_dir: Path
) -> None:
    policy_file = tmp_path / "data" / "policy.yaml"
    install_policy(CONFIGURED_POLICY, policy_file)  # as the service does at start
    first_version = load_policy(policy_file).version
    ctx = dataclasses.replace(make_context(tmp_path, FakeClock(), Flag()), policy_file=policy_file)
    setup = WorkerSetup(
        store_url=ctx.store.url,
        spool_root=ctx.spool.root,
        outputs_dir=tmp_path / "outputs",
        worker_id="w1",
        idle_poll_s=0.05,
        policy_file=policy_file,
        policy_loader=load_policy,
    )
    engine = build_engine(Settings(_env_file=None, models_dir=tiny_models_dir))
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(setup, lambda: engine, stop), daemon=True)
    worker.start()
    try:
        first = _queue_study(ctx, tmp_path / "in1", seed=3)
        assert _policy_version_when_done(ctx, first) == first_version
        new_policy = {"version": first_version + 1, "lung_nodule": {"urgent_diameter_mm": 6.0}}
        with TestClient(create_app(ctx)) as client:
            response = client.put(
                "/api/v1/config/policy", json=new_policy, headers=auth(Role.ADMIN)
            )
        assert response.status_code == 200, response.text
        second = _queue_study(ctx, tmp_path / "in2", seed=4)
        assert _policy_version_when_done(ctx, second) == first_version + 1
    finally:
        stop.set()
        worker.join(30)
        ctx.store.close()
    assert not worker.is_alive()
