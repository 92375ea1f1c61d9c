"""Run ``triage serve`` as a real process for end-to-end tests: start, query, kill -9, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.orthanc import free_port
from triage.api.auth import hash_token

TOKEN = "test-radiologist-token-not-secret"
ADMIN_TOKEN = "test-admin-token-not-secret"


class ServiceProcess:
    """One engine (``triage serve``) with its own data dir, ports, allow list and tokens."""

    def __init__(
        self,
        work_dir: Path,
        *,
        allow: Mapping[str, str] | None = None,  # calling AE -> IP
        nodes: list[dict[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        models_dir: Path | None = None,
    ) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.ae_title = "TRIAGE"
        self.log_path = work_dir / "service.log"
        allow_file = work_dir / "allow.yaml"
        callers = [{"ae_title": ae, "hosts": [ip]} for ae, ip in (allow or {}).items()]
        allow_file.write_text(yaml.safe_dump({"version": 1, "callers": callers}))
        tokens_file = work_dir / "tokens.yaml"
        tokens_file.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "tokens": [
                        {
                            "user": "dr.test",
                            "role": "radiologist",
                            "token_sha256": hash_token(TOKEN),
                        },
                        {
                            "user": "admin.test",
                            "role": "admin",
                            "token_sha256": hash_token(ADMIN_TOKEN),
                        },
                    ],
                }
            )
        )
        self.env = {
            **os.environ,
            "TRIAGE_DATA_DIR": str(work_dir / "data"),
            "TRIAGE_HTTP_HOST": "127.0.0.1",
            "TRIAGE_HTTP_PORT": str(self.http_port),
            "TRIAGE_DICOM_HOST": "127.0.0.1",
            "TRIAGE_DICOM_PORT": str(self.dicom_port),
            "TRIAGE_AE_TITLE": self.ae_title,
            "TRIAGE_DICOM_ALLOW_FILE": str(allow_file),
            "TRIAGE_API_TOKENS_FILE": str(tokens_file),
            "TRIAGE_QUIET_PERIOD_S": "2",
            "TRIAGE_EARLY_QUIET_S": "1",
            "TRIAGE_RESTART_GRACE_S": "20",
            "TRIAGE_OUTBOX_BASE_DELAY_S": "1",
            "TRIAGE_POLL_INTERVAL_S": "1",
            "TRIAGE_THREADS": "1",
            **(env or {}),
        }
        if models_dir is not None:
            self.env["TRIAGE_MODELS_DIR"] = str(models_dir)
        if nodes is not None:
            nodes_file = work_dir / "nodes.yaml"
            nodes_file.write_text(yaml.safe_dump({"version": 1, "nodes": nodes}))
            self.env["TRIAGE_PACS_NODES_FILE"] = str(nodes_file)
        self._proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=20.0,
        )

    @property
    def data_dir(self) -> Path:
        """Return the service's data folder (spool, store, outputs)."""
        return self.work_dir / "data"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the service and wait until it is ready (workers up, store reachable)."""
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "serve"],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: kill -9 takes the workers too
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"triage serve exited early:\n{self.log_tail()}")
            try:
                if self.client.get("/api/v1/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill9()  # never leave a half-started service behind
        raise TimeoutError(f"triage serve not ready in {timeout_s} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """Kill the whole service (server and workers) with SIGKILL, as a power cut would."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(10)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), or kill after 15 s."""
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()

    def studies(self) -> list[dict[str, Any]]:
        """Return the worklist rows."""
        response = self.client.get("/api/v1/studies")
        response.raise_for_status()
        return list(response.json()["studies"])

    def wait_for(
        self, study_uid: str, states: tuple[str, ...], timeout_s: float = 240.0
    ) -> dict[str, Any]:
        """Wait until the study is in one of ``states``; return its worklist row."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            rows = [r for r in self.studies() if r["study_uid"] == study_uid]
            if rows:
                last = rows[0]
                if last["state"] in states:
                    return last
            time.sleep(0.5)
        raise TimeoutError(f"study not in {states} after {timeout_s} s: {last}\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        """Return the end of the service log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.client.close()
