"""``triage demo``: the full service on the embedded default, fed over DICOM as a PACS would.

Generates synthetic studies (and copies the real samples when present), starts ``triage serve``
(SQLite, CPU, the shipped demo models) in its own process, sends every study to it with C-STORE
from an allow-listed AE, waits for the results, prints the prioritized worklist, and says where the
web page and the SRs are. The service keeps running with ``--keep-running``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from rich.table import Table

from triage.adapters.pacs import scu
from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.nodes import PacsNode
from triage.api.auth import hash_token, new_token
from triage.cli_support import console

DEMO_AE = "DEMO-PACS"
FINISHED = ("done", "not_analysed", "failed")
_FLAG = {"stat": "red", "urgent": "dark_orange", "not_analysed": "magenta", "routine": "green"}


def _port(preferred: int) -> int:
    """Return ``preferred`` when it is free on 127.0.0.1, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free TCP port on 127.0.0.1")


def _studies_to_send(inputs: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Group DICOM files by study; list the files a PACS could not send (no UIDs) with why."""
    studies: dict[str, list[Path]] = {}
    unsendable: list[str] = []
    for path in sorted(p for p in inputs.rglob("*") if p.is_file()):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue  # README, CSV, JSON: not DICOM
        uid = str(ds.get("StudyInstanceUID", "") or "")
        if not uid or not str(ds.get("SOPInstanceUID", "") or ""):
            unsendable.append(f"{path.parent.name}/{path.name}: no Study/SOP Instance UID")
            continue
        studies.setdefault(uid, []).append(path)
    return studies, unsendable


class DemoService:
    """A ``triage serve`` process: fresh data dir, a demo token, an allow-listed PACS AE."""

    def __init__(self, data_dir: Path) -> None:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        self.data_dir = data_dir
        self.token = new_token()
        self.http_port, self.dicom_port = _port(8080), _port(11112)
        (data_dir / "allow.yaml").write_text(
            yaml.safe_dump(
                {"version": 1, "callers": [{"ae_title": DEMO_AE, "hosts": ["127.0.0.1"]}]}
            )
        )
        (data_dir / "tokens.yaml").write_text(
            yaml.safe_dump(
                {"version": 1, "tokens": [
                    {"user": "demo.radiologist", "role": "radiologist",
                     "token_sha256": hash_token(self.token)}]}
            )
        )  # fmt: skip
        self.env = {
            **os.environ,
            "TRIAGE_DATA_DIR": str(data_dir),
            "TRIAGE_HTTP_HOST": "127.0.0.1",
            "TRIAGE_HTTP_PORT": str(self.http_port),
            "TRIAGE_DICOM_HOST": "127.0.0.1",
            "TRIAGE_DICOM_PORT": str(self.dicom_port),
            "TRIAGE_DICOM_ALLOW_FILE": str(data_dir / "allow.yaml"),
            "TRIAGE_API_TOKENS_FILE": str(data_dir / "tokens.yaml"),
            "TRIAGE_QUIET_PERIOD_S": "3",
        }
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the worklist page's URL."""
        return f"http://127.0.0.1:{self.http_port}/"

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the service and wait until it is ready."""
        log = (self.data_dir / "service.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "serve"],
            env=self.env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"triage serve exited; see {self.data_dir / 'service.log'}")
            try:
                if self.client.get("/api/v1/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"triage serve was not ready in {timeout_s:.0f} s")

    def send(self, studies: dict[str, list[Path]]) -> None:
        """C-STORE each study on its own association, as a PACS auto-forward rule does."""
        node = PacsNode(name="engine", ae_title="TRIAGE", host="127.0.0.1", port=self.dicom_port)
        for i, files in enumerate(studies.values(), start=1):
            results = scu.store_files(node, files, calling_ae=DEMO_AE)
            bad = [r for r in results if not r.ok]
            note = f" ([red]{len(bad)} refused[/])" if bad else ""
            console.print(f"  sent study {i}/{len(studies)}: {len(files)} instances{note}")

    def wait(self, uids: Sequence[str], timeout_s: float) -> list[dict[str, Any]]:
        """Wait until every study is finished; return the worklist rows (server order)."""
        deadline = time.monotonic() + timeout_s
        rows: list[dict[str, Any]] = []
        with console.status("waiting for the analyses …"):
            while time.monotonic() < deadline:
                rows = self.client.get("/api/v1/studies").json()["studies"]
                state = {r["study_uid"]: r["state"] for r in rows}
                if all(state.get(u) in FINISHED for u in uids):
                    break
                time.sleep(1.0)
        return rows

    def stop(self) -> None:
        """Stop the service (SIGTERM to its process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def worklist_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Return the worklist as the radiologist's page sorts it."""
    table = Table(title="AI triage worklist (most urgent first) — unverified, not for diagnosis")
    for col in ("#", "priority", "modality", "state", "findings / reason", "time to flag"):
        table.add_column(col)
    for n, r in enumerate(rows, start=1):
        priority = str(r["priority"])
        flag_s = (r.get("finished_at") or 0) - (r.get("received_at") or 0)
        text = r["findings_summary"] if r["state"] == "done" else (r.get("reason") or "")
        table.add_row(
            str(n),
            f"[{_FLAG.get(priority, 'white')}]{priority.upper()}[/]",
            ",".join(r.get("modalities", [])),
            str(r["state"]),
            text[:90],
            f"{flag_s:.1f} s" if r.get("finished_at") else "-",
        )
    return table


def run_service_demo(inputs: Path, data_dir: Path, *, keep_running: bool, timeout_s: float) -> int:
    """Run the whole demo; return the number of studies that did not finish (0 on success)."""
    studies, unsendable = _studies_to_send(inputs)
    for line in unsendable[:5]:
        console.print(f"[yellow]not sendable over DICOM (a PACS would refuse it too): {line}[/]")
    service = DemoService(data_dir)
    console.print(f"starting triage serve (SQLite + CPU, data in {data_dir}) …")
    service.start()
    try:
        console.print(
            f"sending {len(studies)} studies over DICOM to TRIAGE@127.0.0.1:{service.dicom_port}"
        )
        service.send(studies)
        rows = service.wait(list(studies), timeout_s)
        console.print(worklist_table(rows))
        unfinished = [
            u for u in studies if u not in {r["study_uid"] for r in rows if r["state"] in FINISHED}
        ]
        console.print(
            f"SRs (TID 1500) and summary.json files: {data_dir / 'outputs'}/<study hash>/\n"
            f"worklist page: {service.url}  (radiologist token: {service.token})"
        )
        if keep_running:
            console.print("the service keeps running; Ctrl-C stops it")
            while service.proc is not None and service.proc.poll() is None:
                time.sleep(1)
        return len(unfinished)
    except (DeliveryError, httpx.HTTPError) as e:
        console.print(f"[red]demo failed: {e}; see {data_dir / 'service.log'}[/]")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        service.stop()
