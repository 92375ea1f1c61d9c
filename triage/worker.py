"""The worker: takes the most urgent job from the store, runs the pipeline, records the result.

It is the only place a service runs models (STYLE: never in the web server's event loop), and it
runs in its own process, so a model crash or an out-of-memory kill takes down the worker, not the
server: the supervisor sees the dead process, re-queues its job (up to ``max_attempts``) and starts
a new worker. The result, the SR's location and the outbox items for write-back are committed in
one transaction; the SR's UID is derived from its inputs, so re-running a job rewrites the same
file and enqueues nothing new — never a second SR.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from triage.core.priority import Priority, TriagePolicy
from triage.core.study import hash_uid
from triage.dicom.outputs import write_sr
from triage.dicom.reader import scan_files
from triage.logs import configure_service_logging
from triage.pipeline import Engine, StudyResult, analyse_study
from triage.reporting import summary_json
from triage.store import jobs
from triage.store.db import Store
from triage.store.jobs import ClaimedJob, OutboxDraft, Outcome
from triage.store.schema import JobState
from triage.store.spool import write_durably

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker process needs, as plain picklable values."""

    store_url: str
    spool_root: Path
    outputs_dir: Path  # <outputs>/<study hash>/<sr uid hash>.dcm + summary.json
    worker_id: str
    lease_s: float = 900.0
    max_attempts: int = 3
    sr_destinations: tuple[str, ...] = ()  # node names the SR is sent to
    flag_targets: tuple[str, ...] = ()  # node names whose priority flag is set
    idle_poll_s: float = 0.2
    log_format: str = ""  # "json" or "text": set up logging in the (spawned) worker process
    # The active policy file (the API replaces it) and the function that reads it, e.g.
    # ``triage.config.load_policy``: a module-level function, so the setup still pickles for spawn.
    # Both given: the worker reloads the policy before a job whenever the file changed.
    policy_file: Path | None = None
    policy_loader: Callable[[Path], TriagePolicy] | None = None


class SystemFailure(Exception):
    """A task crashed inside the pipeline (not the study's fault): retry, then FAILED."""


def _load_previous(path: str) -> Dataset | None:
    if not path:
        return None
    try:
        return dcmread(path)
    except (OSError, ValueError):
        logger.warning("previous SR unreadable; the new SR will not reference it")
        return None


def analyse_job(
    job: ClaimedJob, engine: Engine, setup: WorkerSetup, *, now: datetime
) -> tuple[StudyResult | None, str]:
    """Run the pipeline on the job's spooled files; return the result (None if no study was read).

    Raises:
        SystemFailure: a task crashed (the pipeline marks it), so the job should be retried.
    """
    scan = scan_files([setup.spool_root / p for p in job.paths])
    study = next((s for s in scan.studies if s.study_uid == job.study_uid), None)
    if study is None:
        reasons = sorted({f.reason for f in scan.skipped})[:3]
        return None, "no readable DICOM image in the study: " + ("; ".join(reasons) or "none")
    result = analyse_study(study, engine, now=now, previous_sr=_load_previous(job.previous_sr_path))
    crashed = [o.failure for o in result.outcomes if o.crashed and o.failure]
    if crashed:
        raise SystemFailure("; ".join(crashed))
    return result, ""


def _write_outputs(result: StudyResult, setup: WorkerSetup) -> tuple[str, dict[str, object]]:
    folder = setup.outputs_dir / hash_uid(result.study_uid)
    folder.mkdir(parents=True, exist_ok=True)
    sr_path = write_sr(result.sr, folder) if result.sr is not None else None
    summary = summary_json(result, sr_path)
    write_durably(folder / "summary.json", json.dumps(summary, indent=2).encode())
    return ("" if sr_path is None else str(sr_path)), summary


def _outbox(result: StudyResult, sr_path: str, setup: WorkerSetup) -> list[OutboxDraft]:
    drafts: list[OutboxDraft] = []
    sr_uid = "" if result.sr is None else str(result.sr.SOPInstanceUID)
    if sr_uid:
        drafts += [OutboxDraft("sr", d, sr_uid, sr_path) for d in setup.sr_destinations]
    payload = json.dumps(
        {"priority": result.decision.priority.value, "reasons": list(result.decision.reasons)}
    )
    key = f"{sr_uid or result.study_uid}|{result.decision.priority.value}"
    drafts += [OutboxDraft("flag", d, key, payload) for d in setup.flag_targets]
    return drafts


def _analyse_with_fallback(
    job: ClaimedJob,
    engine: Engine,
    setup: WorkerSetup,
    *,
    now: datetime,
    cpu_fallback: Callable[[], Engine] | None,
) -> tuple[StudyResult | None, str]:
    """Run the job; when it crashes on a GPU engine, run it once more on the CPU engine."""
    try:
        return analyse_job(job, engine, setup, now=now)
    except SystemFailure:
        if cpu_fallback is None:
            raise
        logger.warning("analysis crashed on the GPU; retrying on the CPU",
                       extra={"study": hash_uid(job.study_uid)})  # fmt: skip
        return analyse_job(job, cpu_fallback(), setup, now=now)


def process_one(
    store: Store,
    engine: Engine,
    setup: WorkerSetup,
    *,
    clock: Callable[[], float] = time.time,
    cpu_fallback: Callable[[], Engine] | None = None,
) -> bool:
    """Claim and run one job; return False when the queue was empty.

    ``cpu_fallback`` returns a CPU engine; given when ``engine`` runs on a GPU, so that a CUDA
    out-of-memory or driver crash is retried on the CPU before the job counts as failed.
    """
    job = jobs.claim_next(store, worker_id=setup.worker_id, now=clock(), lease_s=setup.lease_s)
    if job is None:
        return False
    tag = {"study": hash_uid(job.study_uid), "attempt": job.attempt, "worker": setup.worker_id}
    logger.info("analysis started", extra=tag)
    try:
        result, why = _analyse_with_fallback(
            job, engine, setup, now=datetime.fromtimestamp(clock(), UTC), cpu_fallback=cpu_fallback
        )
    except SystemFailure as e:
        retry = job.attempt < setup.max_attempts
        logger.error("analysis crashed", extra={**tag, "retry": retry})
        jobs.fail(
            store, job.study_uid, f"analysis failed (attempt {job.attempt}): {e}",
            worker_id=setup.worker_id, now=clock(), retry=retry,
        )  # fmt: skip
        return True
    if result is None:
        outcome = Outcome(JobState.NOT_ANALYSED, Priority.NOT_ANALYSED, why, {"reasons": [why]})
    else:
        sr_path, summary = _write_outputs(result, setup)
        priority = result.decision.priority
        outcome = Outcome(
            JobState.NOT_ANALYSED if priority == Priority.NOT_ANALYSED else JobState.DONE,
            priority,
            "; ".join(result.decision.reasons) if priority == Priority.NOT_ANALYSED else "",
            summary,
            sr_sop_uid="" if result.sr is None else str(result.sr.SOPInstanceUID),
            sr_path=sr_path,
            outbox=_outbox(result, sr_path, setup),
        )
    jobs.finish(store, job, outcome, worker_id=setup.worker_id, now=clock())
    logger.info("analysis finished", extra={**tag, "priority": outcome.ai_priority.value})
    return True


class PolicyWatch:
    """Swap the engine's policy for the active file's whenever that file changes.

    The API replaces the file atomically (write, fsync, rename), so a change shows as a new
    (mtime, inode, size) even within one mtime tick, and a reader never sees half a file. A file
    that is missing or fails to load leaves the policy in force unchanged (fail safe, H20): jobs go
    on with the last good thresholds, and the error is logged once per version of the file.
    """

    def __init__(self, path: Path, load: Callable[[Path], TriagePolicy]) -> None:
        """Watch ``path``; ``load`` reads and validates it (raising on a bad file)."""
        self.path = path
        self.load = load
        self._seen: tuple[int, int, int] | None = None  # the file version last loaded (or tried)

    def apply(self, engine: Engine, *, worker_id: str = "") -> Engine:
        """Return ``engine`` with the file's policy if the file changed since the last call."""
        try:
            st = self.path.stat()
        except OSError:
            return engine
        signature = (st.st_mtime_ns, st.st_ino, st.st_size)
        if signature == self._seen:
            return engine
        self._seen = signature
        tag = {"worker": worker_id, "in_force": engine.policy.version}
        try:
            policy = self.load(self.path)
        except Exception as e:  # any bad file: keep the last good policy rather than stop (H20)
            logger.error("active policy file unusable; keeping the policy in force",
                         extra={**tag, "error": type(e).__name__})  # fmt: skip
            return engine
        if policy == engine.policy:
            return engine
        logger.info("policy loaded", extra={**tag, "version": policy.version})
        return replace(engine, policy=policy)


def _policy_watch(setup: WorkerSetup) -> PolicyWatch | None:
    if setup.policy_file is None or setup.policy_loader is None:
        return None
    return PolicyWatch(setup.policy_file, setup.policy_loader)


def run_worker(
    setup: WorkerSetup,
    build_engine: Callable[[], Engine],
    stop: Event,
    build_cpu_engine: Callable[[], Engine] | None = None,
    ready: Event | None = None,
) -> None:
    """Process jobs until ``stop`` is set (the body of each worker process).

    ``ready`` is set once the models are loaded, so ``/health/ready`` means "can analyse now".

    ``build_cpu_engine`` is given when ``build_engine`` makes a GPU engine; the CPU engine is
    built only when a job first needs it. With ``setup.policy_file`` and ``setup.policy_loader``
    set, the policy is (re)loaded from that file before a job whenever the file changed, for the
    CPU fallback too.
    """
    cpu: list[Engine] = []

    def cpu_engine() -> Engine:
        if not cpu and build_cpu_engine is not None:
            cpu.append(build_cpu_engine())
        return replace(cpu[0], policy=engine.policy)  # the policy in force, reloads included

    if setup.log_format:
        configure_service_logging(setup.log_format)
    parent = os.getppid()
    store = Store(setup.store_url)
    engine = build_engine()
    watch = _policy_watch(setup)
    if ready is not None:
        ready.set()
    logger.info("worker ready", extra={"worker": setup.worker_id, "pid": os.getpid()})
    try:
        while not stop.is_set():
            if os.getppid() != parent:  # the service died: an orphan must not take more jobs
                logger.error("service gone; worker exits", extra={"worker": setup.worker_id})
                return
            if watch is not None:
                engine = watch.apply(engine, worker_id=setup.worker_id)
            fallback = cpu_engine if build_cpu_engine is not None else None
            if not process_one(store, engine, setup, cpu_fallback=fallback):
                stop.wait(setup.idle_poll_s)
    finally:
        store.close()


class Supervisor:
    """Run the worker processes and the scheduler tick; replace a worker that dies mid-job.

    One supervisor per service. ``tick()`` is called about twice a second from the service's
    main loop: it queues studies that became complete, restarts dead workers (their job goes back
    to the queue, or to FAILED after ``max_attempts``), and re-queues jobs whose lease expired.
    """

    def __init__(
        self,
        store: Store,
        setups: list[WorkerSetup],
        build_engine: Callable[[], Engine],
        *,
        rules: jobs.CompletionRules,
        clock: Callable[[], float] = time.time,
        build_cpu_engine: Callable[[], Engine] | None = None,
        restart_grace_s: float = 60.0,
    ) -> None:
        self._build_cpu_engine = build_cpu_engine
        self._restart_grace_s = restart_grace_s
        self._store = store
        self._setups = setups
        self._build_engine = build_engine
        self._rules = rules
        self._clock = clock
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._procs: dict[str, BaseProcess] = {}
        self._ready: dict[str, Event] = {}

    def start(self) -> None:
        """Re-queue every job left RUNNING by a previous run, then start the workers."""
        max_attempts = self._setups[0].max_attempts if self._setups else 3
        again = jobs.recover(self._store, now=self._clock(), max_attempts=max_attempts,
                             all_running=True)  # fmt: skip
        if again:
            logger.warning("re-queued %d interrupted jobs from the previous run", len(again))
        jobs.restart_quiet(self._store, now=self._clock(), grace_s=self._restart_grace_s)
        for setup in self._setups:
            self._spawn(setup)

    def _spawn(self, setup: WorkerSetup) -> None:
        ready = self._ctx.Event()  # set by the worker once its models are loaded
        proc = self._ctx.Process(
            target=run_worker,
            args=(setup, self._build_engine, self._stop, self._build_cpu_engine, ready),
            name=f"triage-{setup.worker_id}", daemon=True,
        )  # fmt: skip
        proc.start()
        self._procs[setup.worker_id] = proc
        self._ready[setup.worker_id] = ready

    def tick(self) -> list[str]:
        """Do the periodic work; return the study UIDs queued by this tick."""
        now = self._clock()
        queued = jobs.promote_complete(self._store, now=now, rules=self._rules)
        for setup in self._setups:
            proc = self._procs.get(setup.worker_id)
            if proc is not None and not proc.is_alive() and not self._stop.is_set():
                logger.error(
                    "worker died; its job is re-queued",
                    extra={"worker": setup.worker_id, "exitcode": proc.exitcode},
                )
                jobs.recover(self._store, now=now, max_attempts=setup.max_attempts,
                             all_running=False, owner=setup.worker_id)  # fmt: skip
                self._spawn(setup)
        jobs.recover(self._store, now=now, max_attempts=self._setups[0].max_attempts,
                     all_running=False)  # fmt: skip
        return queued

    def alive(self) -> int:
        """Return how many worker processes are running."""
        return sum(p.is_alive() for p in self._procs.values())

    def ready(self) -> int:
        """Return how many workers are running with their models loaded (readiness)."""
        return sum(p.is_alive() and self._ready[w].is_set() for w, p in self._procs.items())

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask workers to finish their current job and exit; kill those that do not."""
        self._stop.set()
        for proc in self._procs.values():
            proc.join(timeout_s)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
