"""``triage serve``: one process for the embedded default — DICOM receiver, HTTP API, workers.

The composition root of the service (like ``cli.py`` for one-shot runs): it builds the store, the
spool, the Storage SCP, the API and the supervisor of worker processes from ``Settings``, and runs
the periodic work (study completion, dead-worker recovery, outbox delivery, PACS polling) on
background threads while uvicorn serves HTTP on the main thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from triage.adapters.pacs.allow import load_allow_list
from triage.adapters.pacs.delivery import Deliverer
from triage.adapters.pacs.nodes import FlagKind, PacsNode, load_nodes
from triage.adapters.pacs.poller import Puller
from triage.adapters.pacs.scp import StorageSCP
from triage.api.app import create_app
from triage.api.auth import TokenBook
from triage.api.context import ApiContext
from triage.config import Settings, load_policy
from triage.pipeline import Engine
from triage.store.db import Store, migrate
from triage.store.ingest import IngestPolicy
from triage.store.jobs import CompletionRules
from triage.store.outbox import RetryPolicy
from triage.store.spool import Spool, write_durably
from triage.worker import Supervisor, WorkerSetup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Where the service keeps its data, all under ``settings.data_dir`` by default."""

    data_dir: Path

    @property
    def spool(self) -> Path:
        """Received instances (hashed names)."""
        return self.data_dir / "spool"

    @property
    def outputs(self) -> Path:
        """SRs and summaries: ``<outputs>/<study hash>/``."""
        return self.data_dir / "outputs"

    @property
    def cache(self) -> Path:
        """Rendered key images."""
        return self.data_dir / "cache"

    @property
    def policy(self) -> Path:
        """The active policy: workers reload it, ``PUT /api/v1/config/policy`` replaces it."""
        return self.data_dir / "policy.yaml"


def install_policy(configured: Path, active: Path) -> None:
    """Copy the configured policy to the active file the first time; after that the API owns it.

    The active file survives restarts, so a policy changed through the API is not undone by a
    restart; a configured file with a newer version than the active one is only warned about,
    because replacing thresholds silently would bypass the audit trail.

    Raises:
        ValueError: either file does not match the policy schema (fail fast, before any job runs).
    """
    wanted = load_policy(configured)
    if not active.exists():
        write_durably(active, configured.read_bytes())
        logger.info("active policy installed", extra={"version": wanted.version})
        return
    in_force = load_policy(active)
    if wanted.version > in_force.version:
        logger.warning(
            "the configured policy is newer than the active one, which stays in force; "
            "PUT it to /api/v1/config/policy to apply it",
            extra={"configured": wanted.version, "active": in_force.version},
        )


class Background:
    """Run ``step`` every ``interval_s`` on a daemon thread; an exception is logged, not fatal."""

    def __init__(self, name: str, step: Callable[[], object], interval_s: float) -> None:
        self._step, self._interval = step, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # a failing tick must not stop the service (H20)
                logger.exception("background step failed", extra={"thread": self._thread.name})
            self._stop.wait(self._interval)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait briefly for it."""
        self._stop.set()
        self._thread.join(5)


class Service:
    """The running engine; ``start()`` then ``serve_http()`` (blocks) or ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        build_engine: Callable[[Settings], Engine],
        *,
        extra_loops: Callable[[Service], list[Background]] | None = None,
    ) -> None:
        self.settings = settings
        self.nodes: dict[str, PacsNode] = {
            n.name: n
            for n in (load_nodes(settings.pacs_nodes_file) if settings.pacs_nodes_file else [])
        }
        self.layout = Layout(settings.data_dir)
        self.store = Store(settings.store_url())
        self.spool = Spool(self.layout.spool)
        self.ingest_policy = IngestPolicy(
            max_disk_fill=settings.max_disk_fill,
            emergency_locations=tuple(settings.emergency_locations),
        )
        self.supervisor = Supervisor(
            self.store,
            [self._worker_setup(n) for n in range(settings.workers)],
            functools.partial(build_engine, settings),
            rules=CompletionRules(
                quiet_s=settings.quiet_period_s, early_quiet_s=settings.early_quiet_s
            ),
            restart_grace_s=settings.restart_grace_s,
            build_cpu_engine=(
                functools.partial(build_engine, settings.model_copy(update={"device": "cpu"}))
                if settings.device != "cpu"
                else None
            ),
        )
        self.scp = StorageSCP(
            ae_title=settings.ae_title,
            host=settings.dicom_host,
            port=settings.dicom_port,
            allow=load_allow_list(settings.dicom_allow_file),
            store=self.store,
            spool=self.spool,
            ingest_policy=self.ingest_policy,
            max_associations=settings.max_associations,
            max_pdu_bytes=settings.max_pdu_bytes,
            check_called_ae=settings.check_called_ae,
        )
        self.deliverer = Deliverer(
            self.store,
            self.nodes,
            settings.ae_title,
            RetryPolicy(
                max_attempts=settings.outbox_max_attempts, base_s=settings.outbox_base_delay_s
            ),
            time.time,
        )
        self.puller = Puller(
            self.store, self.spool, self.ingest_policy, settings.ae_title, time.time
        )
        self._loops = [
            Background("scheduler", self.supervisor.tick, 0.25),
            Background("outbox", self.deliverer.run_once, 0.5),
        ]
        pull_nodes = [n for n in self.nodes.values() if n.pull_from]
        if pull_nodes:
            self._loops.append(
                Background("poller", lambda: self._poll(pull_nodes), settings.poll_interval_s)
            )
        self._extra_loops = extra_loops

    def _worker_setup(self, n: int) -> WorkerSetup:
        s = self.settings
        return WorkerSetup(
            store_url=s.store_url(),
            spool_root=self.layout.spool,
            outputs_dir=self.layout.outputs,
            worker_id=f"worker-{n}",
            log_format=s.log_format,
            lease_s=s.job_lease_s,
            max_attempts=s.max_attempts,
            policy_file=self.layout.policy,
            policy_loader=load_policy,
            sr_destinations=tuple(n.name for n in self.nodes.values() if n.send_to),
            flag_targets=tuple(
                n.name for n in self.nodes.values() if n.flag_target is not FlagKind.NONE
            ),
        )

    def _poll(self, nodes: list[PacsNode]) -> None:
        for node in nodes:
            try:
                self.puller.poll(node)
            except Exception as e:  # one unreachable node must not stop polling the others
                logger.warning("polling failed", extra={"node": node.name, "error": str(e)})

    def tokens(self) -> TokenBook:
        """Return the API tokens (an empty book, so every request is refused, when unset)."""
        path = self.settings.api_tokens_file
        if path is None:
            logger.warning("no TRIAGE_API_TOKENS_FILE: every API request will be refused (401)")
            return TokenBook([])
        return TokenBook.from_yaml(path)

    def start(self) -> None:
        """Migrate the store, sweep partial files, start workers, the receiver and the loops."""
        migrate(self.store.engine)
        install_policy(self.settings.policy_file, self.layout.policy)
        swept = self.spool.sweep_partials()
        if swept:
            logger.warning("removed %d partial files left by a crash (never acknowledged)", swept)
        self.supervisor.start()
        self.scp.start()
        if self._extra_loops is not None:
            self._loops += self._extra_loops(self)
        for loop in self._loops:
            loop.start()
        logger.info(
            "service started",
            extra={"ae_title": self.settings.ae_title, "dicom_port": self.scp.port},
        )

    def app_context(self) -> ApiContext:
        """Return what the HTTP API needs."""
        return ApiContext(
            store=self.store,
            spool=self.spool,
            tokens=self.tokens(),
            ingest_policy=self.ingest_policy,
            models_ready=lambda: self.supervisor.ready() > 0,
            clock=time.time,
            cache_dir=self.layout.cache,
            settings=self.settings,
            policy_file=self.layout.policy,
        )

    def serve_http(self) -> None:
        """Serve the API on the main thread until interrupted, then stop everything."""
        config = uvicorn.Config(
            create_app(self.app_context()),
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=3,  # open event streams never end on their own
        )
        try:
            uvicorn.Server(config).run()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop loops, the receiver and the workers (each finishes or is re-queued next start)."""
        for loop in self._loops:
            loop.stop()
        with contextlib.suppress(Exception):
            self.scp.stop()
        self.supervisor.stop()
        self.store.close()
