"""Fixtures for end-to-end tests of ``triage serve`` against a real Orthanc."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.orthanc import OrthancServer
from tests.service_process import ServiceProcess


def storescu(
    files: list[Path], port: int, *, calling_ae: str = "STORESCU", verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    """Send files to the engine with dcmtk's storescu, as a PACS administrator would."""
    args = ["storescu", "-aet", calling_ae, "-aec", "TRIAGE", "-R"]
    if verbose:
        args.append("-v")
    return subprocess.run(
        [*args, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def query(service: ServiceProcess, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the service's SQLite store directly (read-only), for assertions."""
    con = sqlite3.connect(f"file:{service.data_dir / 'triage.db'}?mode=ro", uri=True)
    try:
        return list(con.execute(sql, params))
    finally:
        con.close()


def sr_files(service: ServiceProcess) -> list[Path]:
    """Return every SR file the service wrote."""
    return sorted((service.data_dir / "outputs").rglob("*.dcm"))


@pytest.fixture
def lidc_files(lidc_dir: Path) -> list[Path]:
    """Return the 133 real LIDC-IDRI-0001 slices."""
    return sorted(lidc_dir.rglob("*.dcm"))


@pytest.fixture
def subset_files(shared_data: Path) -> list[Path]:
    """Return the 16-slice LIDC subset."""
    return sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))


def engine_with_orthanc(
    tmp_path: Path,
    *,
    roles: dict[str, Any] | None = None,
    rest: bool = True,
    env: dict[str, str] | None = None,
    models_dir: Path | None = None,
) -> tuple[ServiceProcess, OrthancServer]:
    """Return an engine and an Orthanc (neither started) that know each other.

    Orthanc lists the engine as modality ``triage`` (auto-forward and C-MOVE destination); the
    engine lists Orthanc as node ``orthanc`` with ``roles`` and allows it and ``STORESCU`` to
    associate from 127.0.0.1.
    """
    assert shutil.which("Orthanc"), "Orthanc must be installed (scripts/install-system-deps.sh)"
    orthanc = OrthancServer(tmp_path / "orthanc")
    node: dict[str, Any] = {
        "name": "orthanc",
        "ae_title": orthanc.aet,
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "dicomweb_url": orthanc.dicomweb_url,
        **({"rest_url": orthanc.http_url} if rest else {}),
        **(roles or {}),
    }
    service = ServiceProcess(
        tmp_path / "engine",
        allow={"STORESCU": "127.0.0.1", orthanc.aet: "127.0.0.1"},
        nodes=[node],
        env=env,
        models_dir=models_dir,
    )
    orthanc.modalities["triage"] = ("TRIAGE", "127.0.0.1", service.dicom_port)
    return service, orthanc  # start both with `with orthanc, service:`


def orthanc_srs(orthanc: OrthancServer, study_uid: str) -> list[dict[str, Any]]:
    """Return the SR instances Orthanc holds for a study (QIDO-RS), each as DICOM JSON."""
    response = orthanc.rest(
        "GET", f"/dicom-web/studies/{study_uid}/instances", params={"Modality": "SR"}
    )
    if response.status_code == 204 or not response.content:
        return []
    response.raise_for_status()
    return list(response.json())


def check_sr_in_orthanc(orthanc: OrthancServer, study_uid: str, work_dir: Path) -> Path:
    """Assert Orthanc holds exactly one SR for the study, found by QIDO-RS, dciodvfy-clean.

    Returns the SR file as fetched from Orthanc.
    """
    (sr_json,) = orthanc_srs(orthanc, study_uid)
    assert sr_json["0020000D"]["Value"] == [study_uid]
    sop_uid = sr_json["00080018"]["Value"][0]
    (match,) = orthanc.rest("POST", "/tools/lookup", content=sop_uid).json()
    path = work_dir / f"sr-{match['ID']}.dcm"
    path.write_bytes(orthanc.rest("GET", f"/instances/{match['ID']}/file").content)
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
    assert errors == [], errors
    return path
