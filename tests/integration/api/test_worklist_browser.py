"""The worklist page in headless Chromium against the app served by uvicorn on loopback.

Sign in with a token, see the rows in priority order with their flags, watch a new STAT study
arrive at the top without a reload (server-sent events), acknowledge and override from the page,
and save a screenshot to ``tests/artifacts/worklist.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from pydicom import dcmread

from tests.integration.api.support import (
    T0,
    TOKENS,
    USERS,
    FakeClock,
    Served,
    Studies,
    nodule,
    result,
)
from triage.api.auth import Role
from triage.api.context import ApiContext
from triage.core.priority import Priority
from triage.store import audit

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TIMEOUT_MS = 10_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Launch Debian's Chromium headless (playwright's own download is not used)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium must be installed at {CHROMIUM}, got no such file", pytrace=False)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _rows(page: Page) -> list[tuple[str, str, str]]:
    """Return (uid, data-priority, flag classes) of each row, top to bottom."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "#rows tr",
        "rows => rows.map(r => [r.dataset.uid, r.dataset.priority,"
        " r.querySelector('.flag').className])",
    )
    return [(uid, prio, flag) for uid, prio, flag in rows]


def _sign_in(page: Page, served: Served, role: Role) -> None:
    page.goto(f"{served.base_url}/")
    page.fill("#token", TOKENS[role])
    page.click("#login button[type=submit]")
    page.wait_for_selector("#rows tr")
    page.wait_for_function("() => document.querySelector('#live').textContent === 'live'")


def test_worklist_page_shows_priorities_updates_live_and_records_actions(
    served: Served,
    studies: Studies,
    ctx: ApiContext,
    clock: FakeClock,
    browser: Browser,
    shared_data: Path,
) -> None:
    files = sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))
    ct = studies.ingest(files, at=T0 - 1500)
    series = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    found = [nodule(series, (303.0, 352.0, 6.0), (333.0, 382.0, 9.0), diameter_mm=11.8)]
    studies.analyse(
        ct,
        ai=Priority.URGENT,
        res=result(ct, Priority.URGENT, found, task="lung_nodule"),
        at=T0 - 1400,
    )
    failed = studies.dx(ai=Priority.NOT_ANALYSED, received_at=T0 - 3000)
    routine = studies.dx(ai=Priority.ROUTINE, received_at=T0 - 4000)
    fractured = studies.dx(ai=Priority.URGENT, received_at=T0 - 600, with_finding=True)
    clock.now = T0

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: _keep_errors(m, problems))
    page.on("pageerror", lambda e: problems.append(str(e)))
    _sign_in(page, served, Role.RADIOLOGIST)

    assert _rows(page) == [
        (ct, "urgent", "flag flag-urgent"),  # urgent, waiting longer than the other urgent
        (fractured, "urgent", "flag flag-urgent"),
        (failed, "not_analysed", "flag flag-not_analysed"),
        (routine, "routine", "flag flag-routine"),
    ]
    assert page.locator(f'tr[data-uid="{ct}"] .badge.unverified').inner_text() == "unverified AI"
    assert page.locator("#who").inner_text() == f"{USERS[Role.RADIOLOGIST]} (radiologist)"
    assert "Doe, Jane Synthetic" in page.locator(f'tr[data-uid="{routine}"]').inner_text()

    # A new STAT order arrives: the row appears on top without a reload.
    page.evaluate("window.__sameDocument = true")
    stat = studies.dx(order="STAT", ai=Priority.ROUTINE, received_at=T0 - 5)
    page.wait_for_function(
        "uid => document.querySelector('#rows tr')?.dataset.uid === uid", arg=stat
    )
    assert page.evaluate("window.__sameDocument") is True
    assert _rows(page)[0] == (stat, "stat", "flag flag-stat")
    assert page.locator(f'tr[data-uid="{stat}"]').get_attribute("class") == "row prio-stat"

    # Acknowledge the CT: the badge goes and the audit trail names the radiologist.
    page.click(f'tr[data-uid="{ct}"] button.ack')
    page.wait_for_selector(f'tr[data-uid="{ct}"] .badge.verified')
    assert page.locator(f'tr[data-uid="{ct}"] .badge.unverified').count() == 0
    (ack,) = audit.recent(ctx.store, action="acknowledge", study_uid=ct)
    assert (ack.actor, ack.role) == (USERS[Role.RADIOLOGIST], "radiologist")

    # Override the routine study to urgent with a reason, through the dialog.
    page.click(f'tr[data-uid="{routine}"] button.override')
    page.select_option("#ov-priority", "urgent")
    page.click("#ov-save")
    assert page.locator("#ov-error").inner_text() == "A reason is required."
    page.fill("#ov-reason", "referrer phoned: pain worse")
    page.click("#ov-save")
    page.wait_for_selector(f'tr[data-uid="{routine}"][data-priority="urgent"] .badge.overridden')
    (override,) = audit.recent(ctx.store, action="override", study_uid=routine)
    assert override.detail == {
        "from": "routine",
        "to": "urgent",
        "reason": "referrer phoned: pain worse",
    }

    page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].length === 2 &&"
        " [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)
    assert problems == []
    page.close()


def _keep_errors(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type == "error":
        problems.append(message.text)
