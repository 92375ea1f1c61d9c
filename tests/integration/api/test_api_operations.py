"""The HTTP API's intake and operations against a real SQLite store: STOW-RS, readiness, metrics,
the admin routes, OpenAPI, and the live event stream (over uvicorn on loopback)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from sqlalchemy import func, select

from tests.factories import FAKE_PATIENT_NAME
from tests.integration.api.support import (
    T0,
    USERS,
    FakeClock,
    Flag,
    Served,
    Studies,
    auth,
    make_context,
)
from triage.api.app import create_app
from triage.api.auth import Role
from triage.api.context import ApiContext
from triage.core.priority import Priority
from triage.store import audit, outbox
from triage.store.schema import Instance, OutboxState, Study

pytestmark = pytest.mark.integration


BOUNDARY = "b0undary-7f3a"


def _multipart(parts: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """Return a STOW-RS body and its Content-Type header."""
    boundary = BOUNDARY
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
            for kind, data in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return body, {"Content-Type": content_type}


def _stow(
    client: TestClient, parts: list[tuple[str, bytes]], role: Role = Role.INTEGRATOR
) -> httpx.Response:
    body, content_type = _multipart(parts)
    headers = {**auth(role), **content_type}
    response: httpx.Response = client.post(
        "/api/v1/dicomweb/studies", content=body, headers=headers
    )
    return response


def test_stow_rs_stores_the_16_slice_series_and_lists_every_instance(
    client: TestClient, ctx: ApiContext, shared_data: Path
) -> None:
    files = sorted((shared_data / "lidc-idri-0001-subset16").glob("*.dcm"))
    response = _stow(client, [("application/dicom", f.read_bytes()) for f in files])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    referenced = body["00081199"]["Value"]
    assert len(referenced) == 16
    assert "00081198" not in body
    sops = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert {item["00081155"]["Value"][0] for item in referenced} == sops
    with ctx.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Instance)) == 16
        sources = set(s.scalars(select(Instance.source)))
        assert sources == {f"stow:{USERS[Role.INTEGRATOR]}"}
        assert s.scalar(select(func.count()).select_from(Study)) == 1
    (row,) = audit.recent(ctx.store, action="stow")
    assert row.detail == {"stored": 16, "failed": {}, "studies": 1}


def test_stow_rs_reports_a_malformed_part_as_failed_with_202_or_409(
    client: TestClient, shared_data: Path
) -> None:
    good = next((shared_data / "lidc-idri-0001-subset16").glob("*.dcm")).read_bytes()
    junk = b"this is not DICOM at all"
    mixed = _stow(client, [("application/dicom", good), ("application/dicom", junk)])
    assert mixed.status_code == 202
    assert len(mixed.json()["00081199"]["Value"]) == 1
    (failed,) = mixed.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    body, content_type = _multipart([("application/dicom", good), ("application/dicom", good)])
    truncated = body[: -len(f"--{BOUNDARY}--\r\n") - 100]  # the second part is cut short
    headers = {**auth(Role.INTEGRATOR), **content_type}
    cut = client.post("/api/v1/dicomweb/studies", content=truncated, headers=headers)
    assert cut.status_code == 202
    assert cut.json()["00081198"]["Value"] == [{"00081197": {"vr": "US", "Value": [0xC000]}}]
    wrong_type = _stow(client, [("text/plain", good)])
    assert wrong_type.status_code == 409
    assert wrong_type.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_stow_rs_out_of_disk_answers_503_with_failure_reason_a700(
    tmp_path: Path, clock: FakeClock, ready: Flag, shared_data: Path
) -> None:
    ctx = make_context(tmp_path, clock, ready, max_disk_fill=1e-6)
    good = next((shared_data / "lidc-idri-0001-subset16").glob("*.dcm")).read_bytes()
    with TestClient(create_app(ctx)) as client:
        response = _stow(client, [("application/dicom", good)], role=Role.ADMIN)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA700]
    assert "00081155" in failed


def test_stow_rs_refuses_other_media_types_and_empty_bodies(client: TestClient) -> None:
    form = client.post("/api/v1/dicomweb/studies", files={"f": b"x"}, headers=auth(Role.ADMIN))
    assert form.status_code == 415
    assert "multipart/related" in form.json()["detail"]
    empty = _stow(client, [])
    assert empty.status_code == 400


def test_readiness_is_503_naming_the_failing_check_when_models_are_not_ready(
    client: TestClient, ready: Flag
) -> None:
    assert client.get("/api/v1/health/ready").status_code == 200
    ready.value = False
    response = client.get("/api/v1/health/ready")
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "fail"
    assert report["checks"]["models"] == {
        "ok": False,
        "detail": "models must be loaded, got not ready",
    }
    assert report["checks"]["store"]["ok"]
    assert report["checks"]["disk"]["ok"]


def test_metrics_expose_queue_outbox_time_to_flag_inference_and_failures(
    client: TestClient, ctx: ApiContext, five: dict[str, str]
) -> None:
    outbox.enqueue(
        ctx.store,
        study_uid=five["ai_urgent"],
        kind="sr",
        destination="pacs",
        item_key="2.25.1",
        payload="x.dcm",
        now=T0,
    )
    text = client.get("/api/v1/metrics").text
    for name in (
        "triage_studies",
        "triage_outbox_items",
        "triage_time_to_flag_seconds_bucket",
        "triage_inference_seconds_bucket",
        "triage_studies_failed",
        "triage_models_ready",
        "triage_store_up",
    ):
        assert f"\n{name}" in text, name
    assert 'triage_studies{priority="stat",state="done"} 1.0' in text
    assert 'triage_outbox_items{state="pending"} 1.0' in text
    assert 'triage_time_to_flag_seconds_bucket{le="30"} 4.0' in text  # DX flagged after 30 s
    assert "triage_time_to_flag_seconds_count 5.0" in text
    assert 'triage_inference_seconds_count{model="fracture_det",task="fracture"} 3.0' in text
    assert 'triage_studies_failed{reason_class="other",state="not_analysed"} 1.0' in text
    assert FAKE_PATIENT_NAME not in text
    assert five["ai_urgent"] not in text


def test_admin_lists_the_outbox_and_retries_a_dead_item_with_an_audit_row(
    client: TestClient, ctx: ApiContext
) -> None:
    outbox.enqueue(
        ctx.store,
        study_uid="1.2.3",
        kind="sr",
        destination="pacs",
        item_key="2.25.9",
        payload="x.dcm",
        now=T0,
    )
    (item,) = outbox.due(ctx.store, now=T0)
    outbox.failed(ctx.store, item.id, "refused", now=T0, retry=outbox.RetryPolicy(max_attempts=1))
    page = client.get("/api/v1/outbox?state=dead", headers=auth(Role.ADMIN)).json()
    assert page["counts"] == {"dead": 1}
    assert [i["id"] for i in page["items"]] == [item.id]
    retried = client.post(f"/api/v1/outbox/{item.id}/retry", headers=auth(Role.ADMIN))
    assert retried.status_code == 200
    assert retried.json()["state"] == OutboxState.PENDING.value
    again = client.post(f"/api/v1/outbox/{item.id}/retry", headers=auth(Role.ADMIN))
    assert again.status_code == 409
    entries = client.get("/api/v1/audit?action=outbox_retry", headers=auth(Role.ADMIN)).json()
    assert [(e["actor"], e["detail"]) for e in entries] == [
        (USERS[Role.ADMIN], {"item_id": item.id})
    ]


def test_openapi_documents_every_route_with_tags(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/studies", "/api/v1/dicomweb/studies", "/api/v1/events"} <= set(spec["paths"])
    tags = {t for p in spec["paths"].values() for op in p.values() for t in op.get("tags", [])}
    assert tags == {"studies", "events", "dicomweb", "admin", "health"}
    assert "bearer" in json.dumps(spec["components"]["securitySchemes"]).lower()


def _next_event(lines: Iterator[str], deadline: float) -> str:
    event = ""
    for line in lines:
        assert time.monotonic() < deadline, "no event in time"
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line == "" and event:
            return event
    raise AssertionError("stream ended")


def test_event_stream_sends_a_worklist_event_on_connect_and_on_each_change(
    served: Served, studies: Studies
) -> None:
    uid = studies.dx(ai=Priority.URGENT, received_at=T0 - 10)
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        with http.stream("GET", "/api/v1/events", headers=auth(Role.INTEGRATOR)) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert _next_event(lines, time.monotonic() + 5) == "worklist"
            ack = http.post(f"/api/v1/studies/{uid}/acknowledge", headers=auth(Role.RADIOLOGIST))
            assert ack.status_code == 200
            start = time.monotonic()
            assert _next_event(lines, start + 5) == "worklist"
            assert time.monotonic() - start < 3
        bad = http.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        for role in Role:
            with http.stream("GET", "/api/v1/events", headers=auth(role)) as stream:
                assert stream.status_code == 200
                assert _next_event(stream.iter_lines(), time.monotonic() + 5) == "worklist"


def test_a_second_app_on_the_same_store_shares_no_state(ctx: ApiContext) -> None:
    first, second = create_app(ctx), create_app(dataclasses.replace(ctx))
    assert first.state.metrics_registry is not second.state.metrics_registry
    assert first.state.key_images is not second.state.key_images
