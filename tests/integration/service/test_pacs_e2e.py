"""``triage serve`` as a PACS administrator sees it: a real Orthanc, real dcmtk, kill -9, outages.

Each test starts its own engine process and Orthanc (in the test session's private network
namespace). The shipped demo models run where a nodule must be found; elsewhere the 16-slice
subset ends NOT_ANALYSED (truncated series) in seconds — which still produces an SR to deliver.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import date
from pathlib import Path

import pydicom
import pytest

from tests.integration.service.conftest import (
    check_sr_in_orthanc,
    engine_with_orthanc,
    orthanc_srs,
    query,
    sr_files,
    storescu,
)
from tests.service_process import ADMIN_TOKEN, ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _study_uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def _wait(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen within {timeout_s} s")


def _dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_autoforwarded_lidc_study_gets_an_sr_and_a_priority_flag_in_orthanc(
    tmp_path: Path, lidc_files: list[Path]
) -> None:
    service, orthanc = engine_with_orthanc(
        tmp_path, roles={"send_to": True, "send": "cstore", "flag_target": "orthanc"}
    )
    with orthanc, service:
        orthanc.upload(lidc_files)
        uid = _study_uid(lidc_files)
        study_id = orthanc.study_id(uid)
        # What a PACS does on a stable-study rule: forward the study to the engine's AE.
        forwarded = orthanc.rest("POST", "/modalities/triage/store", content=study_id)
        assert forwarded.status_code == 200, forwarded.text
        row = service.wait_for(uid, ("done", "not_analysed", "failed"))
        assert row["state"] == "done", row
        assert row["priority"] == "urgent"  # the radiologist-marked nodule is >= 8 mm
        _wait(lambda: len(orthanc_srs(orthanc, uid)) == 1, 60, "SR arriving in Orthanc")
        (sr_json,) = orthanc_srs(orthanc, uid)
        assert sr_json["0020000D"]["Value"] == [uid]  # the SR references the right study
        assert sr_json["00080018"]["Value"] == [row["sr_sop_uid"]]
        sr_id = orthanc.rest("POST", "/tools/lookup", content=row["sr_sop_uid"]).json()[0]["ID"]
        sr_path = tmp_path / "sr-from-orthanc.dcm"
        sr_path.write_bytes(orthanc.rest("GET", f"/instances/{sr_id}/file").content)
        assert _dciodvfy_errors(sr_path) == []
        _wait(
            lambda: (
                orthanc.rest("GET", f"/studies/{study_id}/metadata/AIPriority").status_code == 200
            ),
            60,
            "priority flag in Orthanc",
        )
        flag = orthanc.rest("GET", f"/studies/{study_id}/metadata/AIPriority").text
        assert flag == "urgent"


def _acknowledged_files(storescu_log: str) -> list[Path]:
    """Return the files storescu -v reports as sent and answered with Success."""
    acked, current = [], None
    for line in storescu_log.splitlines():
        m = re.search(r"Sending file: (.+)$", line)
        if m:
            current = Path(m.group(1).strip())
        elif "Received Store Response (Success)" in line and current is not None:
            acked.append(current)
            current = None
    return acked


def test_kill9_while_receiving_and_while_analysing_loses_nothing_and_analyses_once(
    tmp_path: Path, lidc_files: list[Path]
) -> None:
    service = ServiceProcess(tmp_path / "engine", allow={"STORESCU": "127.0.0.1"})
    uid = _study_uid(lidc_files)
    service.start()
    try:
        sender = subprocess.Popen(
            ["storescu", "-v", "-aet", "STORESCU", "-aec", "TRIAGE", "127.0.0.1",
             str(service.dicom_port), *map(str, lidc_files)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        spool = service.data_dir / "spool"
        _wait(lambda: spool.exists() and len(list(spool.rglob("*.dcm"))) >= 20, 60, "20 received")
        service.kill9()  # power cut mid-series
        log, _ = sender.communicate(timeout=60)
        acked = _acknowledged_files(log)
        assert 20 <= len(acked) < len(lidc_files), "the kill must land mid-series"
        stored = {str(r[0]) for r in query(service, "SELECT sop_uid FROM instances")}
        for path in acked:  # every acknowledged instance survived the kill
            assert str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) in stored
        n_files = len(list(spool.rglob("*.dcm")))
        assert n_files >= len(stored)

        service.start()  # restart; the PACS re-sends the whole study
        assert storescu(lidc_files, service.dicom_port).returncode == 0
        service.wait_for(uid, ("running",), timeout_s=120)
        time.sleep(2)
        service.kill9()  # crash mid-inference
        assert query(service, "SELECT state FROM studies") == [("running",)]
        service.start()
        row = service.wait_for(uid, ("done", "not_analysed", "failed"))
        assert row["state"] == "done", row
        assert [r["study_uid"] for r in service.studies()] == [uid]  # listed once
        assert query(service, "SELECT attempts, sr_generation FROM studies") == [(2, 1)]
        assert len(query(service, "SELECT sop_uid FROM instances")) == len(lidc_files)
        assert len(sr_files(service)) == 1  # one SR, not one per attempt
    finally:
        service.stop()


def test_orthanc_outage_during_write_back_delivers_the_sr_exactly_once(
    tmp_path: Path, subset_files: list[Path]
) -> None:
    service, orthanc = engine_with_orthanc(tmp_path, roles={"send_to": True, "send": "stow"})
    uid = _study_uid(subset_files)
    with orthanc, service:
        # ready means the worker has its models loaded, not merely that its process exists
        assert '"msg": "worker ready"' in service.log_path.read_text()
        orthanc.stop()  # the PACS goes down before the engine has anything to deliver
        assert storescu(subset_files, service.dicom_port).returncode == 0
        service.wait_for(uid, ("not_analysed", "done"))
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        def failing() -> bool:
            items = service.client.get("/api/v1/outbox", headers=admin).json()["items"]
            return bool(items) and items[0]["attempts"] >= 1 and items[0]["last_error"] != ""

        _wait(failing, 60, "a visible failed delivery attempt")
        (item,) = service.client.get("/api/v1/outbox", headers=admin).json()["items"]
        assert item["state"] == "pending"
        orthanc.start()  # back after the outage
        _wait(
            lambda: (
                service.client.get("/api/v1/outbox", headers=admin).json()["items"][0]["state"]
                == "delivered"
            ),
            90,
            "delivery after the outage",
        )
        check_sr_in_orthanc(orthanc, uid, tmp_path)


def _dated_today(files: list[Path], out: Path) -> list[Path]:
    """Copy the files with today's StudyDate (the standard C-FIND poll queries by date)."""
    out.mkdir()
    today = date.today().strftime("%Y%m%d")
    copies = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.StudyDate = today
        ds.save_as(out / f.name)
        copies.append(out / f.name)
    return copies


@pytest.mark.parametrize(
    ("roles", "rest"),
    [
        ({"pull_from": True, "query": "qido", "retrieve": "wado", "send_to": True, "send": "stow"},
         True),
        ({"pull_from": True, "query": "cfind", "retrieve": "cmove", "send_to": True,
          "send": "cstore"}, False),
    ],
    ids=["orthanc-changes+wado+stow", "cfind+cmove+cstore"],
)  # fmt: skip
def test_pull_mode_finds_a_new_study_retrieves_it_and_writes_back(
    tmp_path: Path, subset_files: list[Path], roles: dict[str, object], rest: bool
) -> None:
    service, orthanc = engine_with_orthanc(tmp_path, roles=roles, rest=rest)
    files = _dated_today(subset_files, tmp_path / "today")
    uid = _study_uid(files)
    with orthanc, service:
        time.sleep(2.5)  # at least one poll: the watermark starts "from now"
        orthanc.upload(files)  # a new study arrives in the PACS after the engine started
        row = service.wait_for(uid, ("not_analysed", "done"), timeout_s=120)
        assert row["state"] == "not_analysed"  # 16 slices: truncated series, named reason
        assert "fewer than 40" in row["reason"]
        _wait(lambda: len(orthanc_srs(orthanc, uid)) == 1, 60, "SR written back")
        check_sr_in_orthanc(orthanc, uid, tmp_path)
        sources = {str(r[0]) for r in query(service, "SELECT source FROM instances")}
        assert sources == ({"pull:orthanc"} if rest else {f"dimse:{orthanc.aet}"})
