"""A real Orthanc server for integration tests, started as a subprocess on free loopback ports.

Orthanc 1.10 binds 0.0.0.0, so the session runs in a private network namespace
(tests/netns.py). The storage folder survives ``restart()``, so a test can simulate a PACS
outage and check that delivery resumes against the same archive.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ORTHANC_BIN = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT_S = 15.0
ENGINE_AE = "TRIAGE"  # the AE title tests give the engine (calling AE, C-MOVE destination)
STOP_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)  # loaded before any fork


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM Orthanc when pytest dies, so a killed run leaves no server."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class OrthancServer:
    """One Orthanc process with the DICOMweb plugin, configured for the triage engine's tests.

    Args:
        work_dir: folder for the config, the storage and the log; created if missing.
        aet: Orthanc's own AE title.
        modalities: Orthanc ``DicomModalities``: name -> (AE title, host, port). The engine's
            Storage SCP must be here for C-MOVE to reach it.
        stable_age_s: Orthanc ``StableAge``: seconds without new instances before a study is stable.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        aet: str = "ORTHANC",
        modalities: Mapping[str, tuple[str, str, int]] | None = None,
        stable_age_s: int = 1,
    ) -> None:
        self.work_dir = work_dir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = dict(modalities or {})
        self.stable_age_s = stable_age_s
        self.config_path = work_dir / "orthanc.json"
        self.log_path = work_dir / "orthanc.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(base_url=self.http_url, timeout=10.0)

    @property
    def http_url(self) -> str:
        """Return the base URL of the REST API, e.g. ``http://127.0.0.1:8042``."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Return the DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)."""
        return f"{self.http_url}/dicom-web"

    @property
    def running(self) -> bool:
        """Return whether the Orthanc process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> dict[str, Any]:
        """Return the Orthanc configuration this server runs with."""
        return {
            "Name": "triage-test",
            "StorageDirectory": str(self.work_dir / "storage"),
            "IndexDirectory": str(self.work_dir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": True,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                # Host is "name:port": it is written verbatim into the RetrieveURL of QIDO/STOW.
                "Host": f"127.0.0.1:{self.http_port}",
                "Ssl": False,
            },
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "StableAge": self.stable_age_s,
            "UserMetadata": {"AIPriority": 4242, "AIPriorityReasons": 4243},
            "OverwriteInstances": True,
            "ConcurrentJobs": 2,
            "HttpTimeout": 10,
            "DicomScuTimeout": 10,
            "DicomAssociationCloseDelay": 0,
        }

    def start(self) -> None:
        """Start Orthanc and wait until ``GET /system`` answers.

        Raises:
            RuntimeError: if Orthanc exits or does not answer within 15 s; the message carries the
                end of its log.
        """
        if self.running:
            raise RuntimeError("Orthanc must be stopped before start(), got a running process")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(ORTHANC_BIN), str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                # Only a foreign call runs in the child (libc is loaded already), so the usual
                # preexec_fn-with-threads deadlock (imports, allocations) cannot happen.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc must keep running, got exit code {self._proc.returncode}; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                if self._client.get("/system", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"Orthanc must answer GET /system within {START_TIMEOUT_S:g} s, got no answer; "
            f"log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate Orthanc (SIGTERM, then SIGKILL after 5 s); the storage folder is kept."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports and storage."""
        self.stop()
        self.start()

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one REST request to Orthanc (``httpx.Client.request`` keyword arguments)."""
        return self._client.request(method, path, **kwargs)

    def upload(self, paths: list[Path]) -> list[dict[str, Any]]:
        """Upload DICOM files with ``POST /instances`` and return Orthanc's answers."""
        answers = []
        for path in paths:
            response = self.rest("POST", "/instances", content=path.read_bytes())
            response.raise_for_status()
            answers.append(response.json())
        return answers

    def study_id(self, study_uid: str) -> str:
        """Return Orthanc's identifier of a study, from its StudyInstanceUID."""
        response = self.rest("POST", "/tools/lookup", content=study_uid)
        response.raise_for_status()
        ids = [hit["ID"] for hit in response.json() if hit["Type"] == "Study"]
        if len(ids) != 1:
            raise LookupError(f"study must be stored once in Orthanc, got {len(ids)} matches")
        return str(ids[0])

    def clear(self) -> None:
        """Delete every patient (hence every study and instance) from the archive."""
        for patient in self.rest("GET", "/patients").json():
            self.rest("DELETE", f"/patients/{patient}").raise_for_status()

    def log_tail(self, n_lines: int = 40) -> str:
        """Return the last lines of Orthanc's log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n_lines:])

    def close(self) -> None:
        """Stop Orthanc and release the HTTP client."""
        self.stop()
        self._client.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
