"""The radiologist's view of a running service: queue jumping, the page in Chromium, PHI-free logs.

A routine CT keeps the single worker busy; a second routine CT and then a STAT radiograph are
forwarded with storescu. The STAT radiograph must be analysed before the CT that arrived earlier,
and sit at the top of the worklist page in headless Chromium with the STAT flag. Every study
carries known patient names and IDs, and the service log of the whole run must contain none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Browser, sync_playwright
from pydicom.uid import generate_uid

from tests.integration.service.conftest import query, storescu
from tests.service_process import ADMIN_TOKEN, TOKEN, ServiceProcess
from triage.synth.studies import make_dr_study

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
EXPLICIT_LE = "none"  # uncompressed: storescu -R cannot convert compressed files
PHI = {"PatientName": "Phitest^Janette", "PatientID": "PHI-998877", "AccessionNumber": "ACC771155"}


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Launch Debian's Chromium headless."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _relabel(files: list[Path], out: Path, *, priority: str | None = None) -> list[Path]:
    """Copy a study with fresh UIDs and known PHI (and an order priority when given)."""
    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    copies = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        if priority:
            ds.RequestedProcedurePriority = priority
        ds.save_as(out / f.name)
        copies.append(out / f.name)
    return copies


def _uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def test_stat_radiograph_jumps_the_ct_queue_tops_the_page_and_logs_hold_no_phi(
    tmp_path: Path, lidc_files: list[Path], subset_files: list[Path], browser: Browser
) -> None:
    busy = _relabel(lidc_files, tmp_path / "busy")
    routine_ct = _relabel(subset_files, tmp_path / "routine")
    dr = make_dr_study(tmp_path / "dr", 11, kind="limb", n_fractures=1, compression=EXPLICIT_LE)
    stat_dr = _relabel(list(dr.files), tmp_path / "stat", priority="STAT")
    with ServiceProcess(tmp_path / "engine", allow={"STORESCU": "127.0.0.1"}) as service:
        assert storescu(busy, service.dicom_port).returncode == 0
        service.wait_for(_uid(busy), ("running",), timeout_s=120)
        assert storescu(routine_ct, service.dicom_port).returncode == 0
        time.sleep(0.5)
        assert storescu(stat_dr, service.dicom_port).returncode == 0
        refused = storescu(stat_dr, service.dicom_port, calling_ae="INTRUDER")
        assert refused.returncode != 0  # unknown caller: rejected and audited
        for files in (busy, routine_ct, stat_dr):
            service.wait_for(_uid(files), ("done", "not_analysed", "failed"), timeout_s=300)
        started = dict(query(service, "SELECT study_uid, started_at FROM studies"))
        assert started[_uid(stat_dr)] < started[_uid(routine_ct)], "STAT must run first"
        rows = service.studies()
        assert rows[0]["study_uid"] == _uid(stat_dr)
        assert rows[0]["priority"] == "stat"  # the order's STAT stays, whatever the model says

        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{service.http_port}/")
        page.fill("#token", TOKEN)
        page.click("#login button[type=submit]")
        page.wait_for_selector("#rows tr")
        first = page.locator("#rows tr").first
        assert first.get_attribute("data-uid") == _uid(stat_dr)
        assert first.get_attribute("data-priority") == "stat"
        assert "prio-stat" in (first.get_attribute("class") or "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "worklist-service.png"), full_page=True)
        first.locator("button.ack").click()
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

        def acked() -> list[dict[str, object]]:
            audit = service.client.get("/api/v1/audit", headers=admin).json()
            events = audit["events"] if isinstance(audit, dict) else audit
            return [e for e in events if e["action"] == "acknowledge"]

        deadline = time.monotonic() + 10
        while not acked() and time.monotonic() < deadline:
            time.sleep(0.2)
        (event,) = acked()
        assert event["actor"] == "dr.test"
        assert event["study_uid"] == _uid(stat_dr)
        rejected = [r[0] for r in query(service, "SELECT actor FROM audit WHERE action = ?",
                                        "association_rejected")]  # fmt: skip
        assert rejected == ["INTRUDER"]
    log = service.log_path.read_text()
    assert "analysis finished" in log  # the log is real and covers the whole run
    for value in (*PHI.values(), "Phitest", "Janette", "998877"):
        assert value.lower() not in log.lower(), f"patient data {value!r} leaked into the log"
