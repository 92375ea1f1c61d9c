"""Helpers for the HTTP API tests: a real SQLite store and spool in a temp folder, filled through
the same code paths the service uses (``ingest.accept`` of real DICOM files, then the job life
cycle ``promote_complete`` -> ``claim_next`` -> ``finish``), and uvicorn serving the app.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydicom import dcmread

from tests.factories import make_ct_series, make_radiograph
from triage.api.auth import Role, TokenBook, TokenEntry, hash_token
from triage.api.context import ApiContext
from triage.core.priority import Priority
from triage.store import jobs
from triage.store.db import Store, migrate, sqlite_url
from triage.store.ingest import IngestPolicy, accept
from triage.store.schema import JobState
from triage.store.spool import Spool

T0 = 1_700_000_000.0  # the fake clock's start (2023-11-14 22:13:20 UTC)
TOKENS = {
    Role.RADIOLOGIST: "tok-radiologist-0123456789abcdef",
    Role.INTEGRATOR: "tok-integrator-0123456789abcdef",
    Role.ADMIN: "tok-admin-0123456789abcdef",
}
USERS = {Role.RADIOLOGIST: "dr.house", Role.INTEGRATOR: "ris.main", Role.ADMIN: "ops.admin"}
WORKER = "test-worker"


def auth(role: Role) -> dict[str, str]:
    """Return the Authorization header of the test user with ``role``."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class FakeClock:
    """A settable clock (seconds since the epoch)."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Flag:
    """A settable readiness answer."""

    value: bool = True

    def __call__(self) -> bool:
        return self.value


def nodule(
    series_uid: str,
    box_min: Sequence[float],
    box_max: Sequence[float],
    *,
    diameter_mm: float = 9.2,
    score: float = 0.91,
) -> dict[str, object]:
    """Return a nodule finding as ``reporting.finding_json`` writes it."""
    return {
        "type": "nodule",
        "score": score,
        "center_lps_mm": [10.0, 20.0, -110.0],
        "diameter_mm": diameter_mm,
        "volume_mm3": 407.8,
        "lung_rads_size_category": "4A",
        "series_uid": series_uid,
        "box_ijk": {"min": list(box_min), "max": list(box_max)},
    }


def fracture(sop_uid: str, box_min: Sequence[float], box_max: Sequence[float]) -> dict[str, object]:
    """Return a fracture finding as ``reporting.finding_json`` writes it."""
    return {
        "type": "fracture",
        "label": "fracture",
        "score": 0.88,
        "sop_instance_uid": sop_uid,
        "box_col_row_px": {"min": list(box_min), "max": list(box_max)},
        "width_mm": 4.0,
        "height_mm": 11.5,
    }


def result(
    study_uid: str,
    ai: Priority,
    findings: Sequence[dict[str, object]],
    *,
    task: str,
    seconds: float = 3.5,
    sr_uid: str = "",
) -> dict[str, object]:
    """Return a result in ``reporting.summary_json``'s shape."""
    model = "lung_nodule_det" if task == "lung_nodule" else "fracture_det"
    failed = ai == Priority.NOT_ANALYSED
    return {
        "study_uid": study_uid,
        "priority": ai.value,
        "reasons": ["not analysed: no series qualifies"] if failed else ["rule reason"],
        "policy_version": 1,
        "findings": list(findings),
        "tasks": [
            {
                "task": task,
                "series_uid": None,
                "status": "failed" if failed else "analysed",
                "reason": "no series qualifies" if failed else None,
                "candidates": len(findings),
                "reported": len(findings),
                "seconds": seconds,
                "provider": "CPUExecutionProvider",
            }
        ],
        "skipped_series": [],
        "models": [{"name": model, "version": "1.0.0", "weights_sha256": "0" * 64}],
        "sr_sop_instance_uid": sr_uid or None,
        "sr_path": None,
        "seconds": seconds + 0.5,
        "ai_generated": True,
        "verified_by_radiologist": False,
    }


@dataclass
class Studies:
    """Builds studies in the store through the real ingest and job functions."""

    ctx: ApiContext
    root: Path
    _n: int = field(default=0)

    def ingest(self, files: Sequence[Path], *, at: float, source: str = "test") -> str:
        """Accept every file at time ``at``; return the study UID."""
        uids = set()
        for path in files:
            data = path.read_bytes()
            ds = dcmread(path, stop_before_pixels=True)
            done = accept(
                data,
                ds,
                store=self.ctx.store,
                spool=self.ctx.spool,
                source=source,
                now=at,
                policy=self.ctx.ingest_policy,
            )
            uids.add(done.study_uid)
        assert len(uids) == 1, uids
        return uids.pop()

    def analyse(
        self,
        study_uid: str,
        *,
        ai: Priority,
        res: dict[str, object],
        at: float,
        reason: str = "",
        sr_uid: str = "",
    ) -> None:
        """Run the job life cycle for the (only) waiting study and record ``res``."""
        queued = jobs.promote_complete(self.ctx.store, now=at, rules=jobs.CompletionRules())
        assert study_uid in queued
        job = jobs.claim_next(self.ctx.store, worker_id=WORKER, now=at, lease_s=60)
        assert job is not None
        assert job.study_uid == study_uid
        state = JobState.NOT_ANALYSED if ai == Priority.NOT_ANALYSED else JobState.DONE
        outcome = jobs.Outcome(state, ai, reason or f"AI says {ai.value}", res, sr_uid, "")
        assert jobs.finish(self.ctx.store, job, outcome, worker_id=WORKER, now=at)

    def _edit(self, files: Sequence[Path], **attrs: object) -> None:
        for path in files:
            ds = dcmread(path)
            for key, value in attrs.items():
                setattr(ds, key, value)
            ds.save_as(path, enforce_file_format=True)

    def _folder(self, kind: str) -> Path:
        self._n += 1
        return self.root / f"{kind}{self._n:03d}"

    def dx(
        self,
        *,
        order: str = "ROUTINE",
        ai: Priority | None,
        received_at: float,
        accession: str = "",
        with_finding: bool = False,
        rows: int = 200,
        cols: int = 160,
    ) -> str:
        """Add a one-image DX study; analyse it when ``ai`` is given (a fracture if asked)."""
        path = make_radiograph(
            self._folder("dx") / "IM0.dcm", rows=rows, cols=cols, pixel_spacing_mm=(0.2, 0.2)
        )
        accession = accession or f"ACC{self._n:04d}"
        self._edit(
            [path],
            RequestedProcedurePriority=order,
            AccessionNumber=accession,
            StudyDescription="DX WRIST",
        )
        uid = self.ingest([path], at=received_at)
        if ai is not None:
            sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            found = [fracture(sop, (40.0, 50.0), (90.0, 120.0))] if with_finding else []
            self.analyse(
                uid, ai=ai, res=result(uid, ai, found, task="fracture"), at=received_at + 30
            )
        return uid

    def ct(self, *, order: str = "ROUTINE", ai: Priority | None, received_at: float) -> str:
        """Add a small 3-slice synthetic CT study; analyse it (no findings) when ``ai`` is given."""
        folder = make_ct_series(self._folder("ct"), 3)
        files = sorted(folder.glob("*.dcm"))
        self._edit(
            files,
            RequestedProcedurePriority=order,
            AccessionNumber=f"ACC{self._n:04d}",
            StudyDescription="CT CHEST",
        )
        uid = self.ingest(files, at=received_at)
        if ai is not None:
            self.analyse(
                uid, ai=ai, res=result(uid, ai, [], task="lung_nodule"), at=received_at + 60
            )
        return uid


def make_context(
    tmp_path: Path, clock: FakeClock, ready: Flag, *, max_disk_fill: float = 1.0
) -> ApiContext:
    """Return a context over a fresh SQLite store and spool in ``tmp_path``."""
    store = Store(sqlite_url(tmp_path / "data" / "triage.db"))
    migrate(store.engine)
    book = TokenBook(
        TokenEntry(user=USERS[role], role=role, token_sha256=hash_token(TOKENS[role]))
        for role in Role
    )
    return ApiContext(
        store=store,
        spool=Spool(tmp_path / "data" / "spool"),
        tokens=book,
        ingest_policy=IngestPolicy(max_disk_fill=max_disk_fill),
        models_ready=ready,
        clock=clock,
        cache_dir=tmp_path / "data" / "cache",
    )


@dataclass(frozen=True)
class Served:
    """An app served by uvicorn on a loopback port."""

    base_url: str
    server: uvicorn.Server


@contextmanager
def serve(app: FastAPI) -> Iterator[Served]:
    """Serve the app with uvicorn in a thread on a free loopback port, until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    yield Served(f"http://127.0.0.1:{port}", server)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
