"""Open the store from one URL: SQLite (WAL, the embedded default) or PostgreSQL, same code.

The schema is created only by Alembic migrations (``migrate``), never by ``create_all``, so an
upgraded installation and a fresh one have exactly the same tables.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """Return an engine for ``url``; SQLite gets WAL, full fsync and a busy timeout.

    ``synchronous=FULL`` because an instance is acknowledged only after its row is committed: a
    power cut after the acknowledgement must not lose the row.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=True,
            hide_parameters=True,  # bound rows hold patient names: keep them out of error text
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def sqlite_url(path: Path) -> str:
    """Return the SQLAlchemy URL of a SQLite file (created with its folder when first opened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (``alembic upgrade head``); safe to repeat."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def ping(engine: Engine) -> None:
    """Raise when the store cannot answer a trivial query (used by ``/health/ready``)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


class Store:
    """The engine plus a session factory; one per process (workers open their own)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session in a transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        """Release pooled connections (before a fork, and at shutdown)."""
        self.engine.dispose()
