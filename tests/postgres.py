"""A private PostgreSQL server for tests: initdb in a temp dir, Unix socket only, no TCP.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user that the
Debian package creates (``runuser``). The socket lives in the temp dir: nothing else reaches it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(
            f"PostgreSQL's {name} must be installed (Debian package postgresql; "
            "scripts/install-system-deps.sh installs it), got none under /usr/lib/postgresql"
        )
    return found[-1]


class PostgresServer:
    """One throw-away cluster with a ``triage`` database; ``url`` is its SQLAlchemy URL."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user="postgres")
            self.root.chmod(0o700)

    def _run(self, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *args] if self._as_postgres else list(args)
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        """Return the URL of the ``triage`` database over the private socket."""
        return f"postgresql+psycopg://postgres@/triage?host={self.root}"

    def start(self) -> None:
        """Create the cluster, start it, and create the database."""
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        options = f"-k {self.root} -c listen_addresses='' -c fsync=on"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                  str(self.root / "log"), "start")  # fmt: skip
        self._run(_bin("createdb"), "-h", str(self.root), "-U", "postgres", "triage")

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
