"""What the HTTP edge needs from the composition root, passed in once (STYLE H16, H19)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triage.api.auth import TokenBook
from triage.config import Settings
from triage.store.db import Store
from triage.store.ingest import IngestPolicy
from triage.store.spool import Spool


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Everything the routes use; built by ``cli.py`` (or a test) and kept on ``app.state``.

    Attributes:
        store: the service's database (studies, outbox, audit).
        spool: where received instances live; STOW-RS writes here, key images read from here.
        tokens: the bearer tokens and their roles.
        ingest_policy: disk threshold and emergency locations shared with the DIMSE receiver; the
            readiness check uses the same threshold.
        models_ready: returns whether the worker's models are loaded (readiness).
        clock: returns the time as seconds since the epoch; a test passes a fake one.
        cache_dir: a writable folder under the data dir for rendered key images (PNG files named
            by hashes, never by patient data); created when first used.
        settings: the service's settings, shown (non-secret fields only) by ``GET /config``;
            None: that route answers 404.
        policy_file: the active policy file the workers reload (``<data_dir>/policy.yaml``),
            replaced by ``PUT /config/policy``; None: policy changes answer 404.
    """

    store: Store
    spool: Spool
    tokens: TokenBook
    ingest_policy: IngestPolicy
    models_ready: Callable[[], bool]
    clock: Callable[[], float]
    cache_dir: Path
    settings: Settings | None = None
    policy_file: Path | None = None
