"""The HTTP API against a real SQLite store (``TestClient(create_app(ctx))``): authentication and
roles on every route, the worklist's order and filters, reading, acknowledging and overriding a
study, and key images. STOW-RS, probes, metrics, admin and live events: test_api_operations.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom import dcmread

from tests.factories import FAKE_PATIENT_ID, FAKE_PATIENT_NAME, make_radiograph
from tests.integration.api.support import (
    T0,
    USERS,
    FakeClock,
    Studies,
    auth,
    nodule,
    result,
)
from triage.api.auth import ROLE_RIGHTS, Right, Role
from triage.api.context import ApiContext
from triage.api.key_image import BOX_RGB
from triage.core.priority import Priority
from triage.store import audit
from triage.store.schema import Study

pytestmark = pytest.mark.integration

UNKNOWN = "1.2.826.0.1.3680043.8.498.1"
STUDY = f"/api/v1/studies/{UNKNOWN}"

# (method, path, right needed, status for a caller who has the right, with no body/no data)
ROUTES: list[tuple[str, str, Right, int | None]] = [
    ("GET", "/api/v1/studies", Right.READ, 200),
    ("GET", STUDY, Right.READ, 404),
    ("GET", f"{STUDY}/key-image.png", Right.READ, 404),
    ("GET", "/api/v1/whoami", Right.READ, 200),
    ("GET", "/api/v1/events", Right.READ, None),  # streams forever: tested over uvicorn
    ("POST", f"{STUDY}/acknowledge", Right.REVIEW, 404),
    ("POST", f"{STUDY}/override", Right.REVIEW, 422),
    ("POST", "/api/v1/dicomweb/studies", Right.STORE, 415),
    ("GET", "/api/v1/audit", Right.ADMIN, 200),
    ("GET", "/api/v1/outbox", Right.ADMIN, 200),
    ("POST", "/api/v1/outbox/1/retry", Right.ADMIN, 404),
]


@pytest.mark.parametrize(("method", "path", "right", "ok"), ROUTES)
@pytest.mark.parametrize("header", [None, "Bearer not-a-known-token", "Basic dXNlcjpwdw=="])
def test_every_protected_route_answers_401_with_bearer_challenge_without_a_valid_token(
    client: TestClient, method: str, path: str, right: Right, ok: int | None, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


ROLE_CASES = [
    (method, path, right, ok, role)
    for method, path, right, ok in ROUTES
    for role in Role
    if not (ok is None and right in ROLE_RIGHTS[role])  # open streams: see test_event_stream_*
]


@pytest.mark.parametrize(("method", "path", "right", "ok", "role"), ROLE_CASES)
def test_every_protected_route_answers_403_to_a_role_without_the_right(
    client: TestClient, method: str, path: str, right: Right, ok: int | None, role: Role
) -> None:
    allowed = right in ROLE_RIGHTS[role]
    response = client.request(method, path, headers=auth(role))
    assert response.status_code == (ok if allowed else 403), response.text


def test_roles_grant_exactly_the_documented_rights() -> None:
    assert ROLE_RIGHTS[Role.RADIOLOGIST] == {Right.READ, Right.REVIEW}
    assert ROLE_RIGHTS[Role.INTEGRATOR] == {Right.READ, Right.STORE}
    assert ROLE_RIGHTS[Role.ADMIN] == set(Right)


@pytest.mark.parametrize("path", ["/api/v1/health/live", "/api/v1/metrics", "/"])
def test_probes_metrics_and_the_page_need_no_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_api_answers_are_not_cached_and_the_page_has_a_content_security_policy(
    client: TestClient,
) -> None:
    assert client.get("/api/v1/studies", headers=auth(Role.ADMIN)).headers["cache-control"] == (
        "no-store"
    )
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="worklist"' in page.text


def _uids(client: TestClient, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/studies{query}", headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 200, response.text
    return [row["study_uid"] for row in response.json()["studies"]]


def test_worklist_puts_a_stat_order_over_ai_urgent_over_not_analysed_over_routine(
    client: TestClient, five: dict[str, str]
) -> None:
    assert _uids(client) == [
        five["stat_order"],  # the AI said routine, but never lowers an order
        five["ai_urgent"],
        five["not_analysed"],
        five["routine_older"],  # equal priority: longest waiting first
        five["routine_newer"],
    ]


def test_worklist_rows_carry_what_the_reader_needs(
    client: TestClient, five: dict[str, str]
) -> None:
    rows = client.get("/api/v1/studies", headers=auth(Role.RADIOLOGIST)).json()["studies"]
    top, urgent = rows[0], rows[1]
    assert (top["priority"], top["ai_priority"], top["order_priority"]) == (
        "stat",
        "routine",
        "stat",
    )
    assert urgent["findings"][0]["text"] == "fracture 4.0 x 11.5 mm, score 0.88"
    assert urgent["findings_summary"] == "fracture 4.0 x 11.5 mm, score 0.88"
    assert urgent["models"] == [{"name": "fracture_det", "version": "1.0.0"}]
    assert urgent["waiting_s"] == pytest.approx(3100.0)
    assert urgent["unverified"] is True
    assert urgent["acknowledged"] is False
    assert urgent["patient_name"] == FAKE_PATIENT_NAME
    assert urgent["patient_id"] == FAKE_PATIENT_ID
    assert urgent["accession_number"].startswith("ACC")
    assert urgent["state"] == "done"
    assert top["modalities"] == ["CT"]


def test_worklist_filters_by_priority_modality_state_date_and_acknowledgement(
    client: TestClient, five: dict[str, str]
) -> None:
    assert _uids(client, "?priority=urgent") == [five["ai_urgent"]]
    assert _uids(client, "?priority=stat&priority=not_analysed") == [
        five["stat_order"],
        five["not_analysed"],
    ]
    assert _uids(client, "?modality=CT") == [five["stat_order"]]
    assert _uids(client, "?modality=dx&status=not_analysed") == [five["not_analysed"]]
    window = "?received_from=2023-11-14T21:30:00Z&received_to=2023-11-14T22:10:00Z"
    assert _uids(client, window) == [five["not_analysed"], five["routine_older"]]
    assert _uids(client, "?acknowledged=true") == []
    assert len(_uids(client, "?acknowledged=false&limit=2")) == 2
    bad = client.get("/api/v1/studies?modality=C%25", headers=auth(Role.RADIOLOGIST))
    assert bad.status_code == 422


def test_reading_a_study_returns_its_detail_and_writes_a_study_read_audit_row(
    client: TestClient, ctx: ApiContext, five: dict[str, str]
) -> None:
    uid = five["ai_urgent"]
    response = client.get(f"/api/v1/studies/{uid}", headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 200
    detail = response.json()
    assert detail["reasons"] == ["rule reason"]
    assert detail["tasks"][0]["task"] == "fracture"
    finding = detail["finding_details"][0]
    assert {m["name"]: m["value"] for m in finding["measurements"]} == {
        "width": 4.0,
        "height": 11.5,
    }
    assert finding["box_col_row_px"] == {"min": [40.0, 50.0], "max": [90.0, 120.0]}
    assert finding["key_image_url"].endswith("/key-image.png?finding=0")
    rows = audit.recent(ctx.store, action="study_read", study_uid=uid)
    assert [(r.actor, r.role) for r in rows] == [(USERS[Role.RADIOLOGIST], "radiologist")]


def test_an_unknown_study_is_a_404_that_does_not_echo_the_uid(client: TestClient) -> None:
    response = client.get(STUDY, headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 404
    assert "study must exist" in response.json()["detail"]
    assert UNKNOWN not in response.text


def test_acknowledging_clears_unverified_and_is_audited_until_a_new_analysis(
    client: TestClient, ctx: ApiContext, studies: Studies, clock: FakeClock, tmp_path: Path
) -> None:
    uid = studies.dx(ai=Priority.URGENT, received_at=T0 - 100, accession="ACK1")
    response = client.post(f"/api/v1/studies/{uid}/acknowledge", headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 200
    assert response.json()["acknowledged"] is True
    assert response.json()["unverified"] is False
    (row,) = audit.recent(ctx.store, action="acknowledge", study_uid=uid)
    assert row.actor == USERS[Role.RADIOLOGIST]
    assert row.detail["priority"] == "urgent"
    # A late image re-opens the study; its new AI result is unverified again.
    folder = next(p for p in (tmp_path / "dicom").iterdir() if p.name.startswith("dx"))
    late = make_radiograph(folder / "IM1.dcm", rows=200, cols=160, pixel_spacing_mm=(0.2, 0.2))
    studies.ingest([late], at=T0 + 10)
    studies.analyse(
        uid, ai=Priority.URGENT, res=result(uid, Priority.URGENT, [], task="fracture"), at=T0 + 40
    )
    clock.now = T0 + 50
    (row_after,) = client.get("/api/v1/studies", headers=auth(Role.RADIOLOGIST)).json()["studies"]
    assert row_after["unverified"] is True


def test_override_requires_a_reason_and_is_audited_without_touching_the_ai_result(
    client: TestClient, ctx: ApiContext, five: dict[str, str]
) -> None:
    uid = five["routine_newer"]
    url = f"/api/v1/studies/{uid}/override"
    for body in ({"priority": "stat"}, {"priority": "stat", "reason": "   "}):
        response = client.post(url, json=body, headers=auth(Role.RADIOLOGIST))
        assert response.status_code == 422, body
    bad = client.post(url, json={"priority": "urgentish", "reason": "x"}, headers=auth(Role.ADMIN))
    assert bad.status_code == 422
    with ctx.store.session() as s:
        before = s.get(Study, uid)
        assert before is not None
        ai_before, sr_before = before.ai_priority, before.sr_sop_uid
    body = {"priority": "stat", "reason": "clinician called: suspected scaphoid fracture"}
    response = client.post(url, json=body, headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 200
    row = response.json()
    assert (row["priority"], row["effective_priority"], row["overridden"]) == (
        "stat",
        "routine",
        True,
    )
    assert _uids(client)[0] == uid  # overridden STAT and oldest-waiting... no: newest STAT
    (entry,) = audit.recent(ctx.store, action="override", study_uid=uid)
    assert entry.detail == {"from": "routine", "to": "stat", "reason": body["reason"]}
    with ctx.store.session() as s:
        after = s.get(Study, uid)
        assert after is not None
        assert (after.ai_priority, after.sr_sop_uid) == (ai_before, sr_before)
        assert (after.override_by, after.override_reason) == (
            USERS[Role.RADIOLOGIST],
            body["reason"],
        )
    detail = client.get(f"/api/v1/studies/{uid}", headers=auth(Role.RADIOLOGIST)).json()
    assert [h["action"] for h in detail["history"]] == ["override"]


def _box_pixels(png: bytes) -> tuple[tuple[int, int], int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    close = np.all(np.abs(rgb - np.array(BOX_RGB)) <= 8, axis=-1)
    return image.size, int(close.sum())


def test_nodule_key_image_is_the_lung_windowed_ct_slice_with_the_box_drawn(
    client: TestClient, ctx: ApiContext, studies: Studies, shared_data: Path
) -> None:
    files = sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))
    uid = studies.ingest(files, at=T0 - 100)
    series = str(dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    found = [nodule(series, (300.0, 280.0, 6.0), (330.0, 310.0, 9.0))]
    studies.analyse(
        uid,
        ai=Priority.URGENT,
        res=result(uid, Priority.URGENT, found, task="lung_nodule", sr_uid="2.25.77"),
        at=T0 - 50,
    )
    url = f"/api/v1/studies/{uid}/key-image.png?finding=0&size=256"
    response = client.get(url, headers=auth(Role.RADIOLOGIST))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    size, n_box = _box_pixels(response.content)
    assert size == (256, 256)
    assert n_box > 100  # a ~15 px square outline, 2 px wide
    grey = np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))
    assert grey.std() > 20  # a real slice, not a blank frame
    cached = list(ctx.cache_dir.glob("*.png"))
    assert len(cached) == 1
    assert uid not in cached[0].name
    again = client.get(url, headers=auth(Role.RADIOLOGIST))
    assert again.content == response.content
    missing = client.get(url.replace("finding=0", "finding=3"), headers=auth(Role.RADIOLOGIST))
    assert missing.status_code == 404
    assert "finding must be an index below 1" in missing.json()["detail"]


def test_fracture_key_image_is_the_radiograph_with_the_box_at_the_requested_size(
    client: TestClient, five: dict[str, str]
) -> None:
    url = f"/api/v1/studies/{five['ai_urgent']}/key-image.png?size=256"
    response = client.get(url, headers=auth(Role.INTEGRATOR))
    assert response.status_code == 200
    size, n_box = _box_pixels(response.content)
    assert size == (205, 256)  # 160 x 200 pixels of 0.2 mm, longer side 256
    assert n_box > 100
    none = client.get(
        f"/api/v1/studies/{five['routine_newer']}/key-image.png", headers=auth(Role.INTEGRATOR)
    )
    assert none.status_code == 404
    assert "has no findings" in none.json()["detail"]
