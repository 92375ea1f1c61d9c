"""The configuration routes against a real SQLite store: who may call them, what GET shows (and
never shows), and how PUT /config/policy guards, writes and audits a policy change."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integration.api.support import TOKENS, USERS, FakeClock, Flag, auth, make_context
from triage.api.app import create_app
from triage.api.auth import Role, hash_token
from triage.api.context import ApiContext
from triage.api.routes.config import redact_url
from triage.config import REPO_ROOT, Settings, load_policy
from triage.inference.card import load_card
from triage.service import install_policy
from triage.store import audit

pytestmark = pytest.mark.integration

SECRET = "s3cret-db-password"
CONFIGURED_POLICY = REPO_ROOT / "configs" / "policy.yaml"


def _policy(version: int, *, urgent_diameter_mm: float = 6.0) -> dict[str, object]:
    return {
        "version": version,
        "lung_nodule": {"min_score": 0.4, "urgent_diameter_mm": urgent_diameter_mm},
        "fracture": {"min_score": 0.5, "stat_labels": ["cervical_spine", "femur"]},
    }


@pytest.fixture
def active_policy(tmp_path: Path) -> Path:
    """Return the active policy file, installed from configs/policy.yaml as the service does."""
    path = tmp_path / "data" / "policy.yaml"
    install_policy(CONFIGURED_POLICY, path)
    return path


@pytest.fixture
def ctx(tmp_path: Path, active_policy: Path) -> Iterator[ApiContext]:
    """Return a context with settings (a DB password in them) and the active policy file."""
    settings = Settings(
        _env_file=None,  # a developer's .env must not change what the test sees
        data_dir=tmp_path / "data",
        database_url=f"postgresql+psycopg://triage:{SECRET}@db.example:5432/triage",
        ae_title="TRIAGE_T",
        dicom_port=11999,
        http_port=8999,
        quiet_period_s=12.5,
        workers=3,
        max_disk_fill=0.9,
    )
    base = make_context(tmp_path, FakeClock(), Flag())
    context = dataclasses.replace(base, settings=settings, policy_file=active_policy)
    yield context
    context.store.close()


@pytest.fixture
def client(ctx: ApiContext) -> Iterator[TestClient]:
    """Return a test client of the app."""
    with TestClient(create_app(ctx)) as c:
        yield c


def _config_changes(ctx: ApiContext) -> list[audit.AuditRecord]:
    return audit.recent(ctx.store, action="config_change")


def test_config_routes_answer_401_without_a_token(client: TestClient) -> None:
    assert client.get("/api/v1/config").status_code == 401
    response = client.put("/api/v1/config/policy", json=_policy(2))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.INTEGRATOR])
def test_config_routes_answer_403_to_non_admin_roles(
    client: TestClient, ctx: ApiContext, active_policy: Path, role: Role
) -> None:
    before = active_policy.read_bytes()
    assert client.get("/api/v1/config", headers=auth(role)).status_code == 403
    response = client.put("/api/v1/config/policy", json=_policy(2), headers=auth(role))
    assert response.status_code == 403
    assert "'admin' right" in response.json()["detail"]
    assert active_policy.read_bytes() == before
    assert _config_changes(ctx) == []


def test_get_config_shows_settings_models_and_the_active_policy(
    client: TestClient, active_policy: Path
) -> None:
    response = client.get("/api/v1/config", headers=auth(Role.ADMIN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ae_title"] == "TRIAGE_T"
    assert (body["dicom_port"], body["http_port"]) == (11999, 8999)
    assert body["quiet_period_s"] == 12.5
    assert body["workers"] == 3
    assert body["max_disk_fill"] == 0.9
    assert body["policy"]["file"] == str(active_policy)
    assert body["policy"]["editable"] is True
    configured = load_policy(CONFIGURED_POLICY)
    assert body["policy"]["policy"]["version"] == configured.version
    assert body["policy"]["policy"]["lung_nodule"]["urgent_diameter_mm"] == (
        configured.lung_nodule.urgent_diameter_mm
    )
    shipped = {
        (card.name, card.version, card.operating_point_score)
        for card in (load_card(p.parent) for p in (REPO_ROOT / "models").glob("*/model.yaml"))
    }
    assert shipped
    assert all(point is not None for _, _, point in shipped)
    assert {(m["name"], m["version"], m["operating_point"]) for m in body["models"]} == shipped


def test_get_config_shows_no_secret(client: TestClient) -> None:
    text = client.get("/api/v1/config", headers=auth(Role.ADMIN)).text
    assert SECRET not in text
    for role in Role:
        assert TOKENS[role] not in text
        assert hash_token(TOKENS[role]) not in text
    assert "token" not in text.lower()
    assert "password" not in text.lower()


def test_put_policy_with_a_higher_version_writes_the_file_and_audits_ok(
    client: TestClient, ctx: ApiContext, active_policy: Path
) -> None:
    response = client.put(
        "/api/v1/config/policy", json=_policy(7, urgent_diameter_mm=6.0), headers=auth(Role.ADMIN)
    )
    assert response.status_code == 200, response.text
    assert response.json()["policy"]["version"] == 7
    written = load_policy(active_policy)  # what the workers will load
    assert written.version == 7
    assert written.lung_nodule.urgent_diameter_mm == 6.0
    assert written.fracture.stat_labels == ("cervical_spine", "femur")
    assert not list(active_policy.parent.glob("*.tmp"))  # no temporary file left behind
    shown = client.get("/api/v1/config", headers=auth(Role.ADMIN)).json()
    assert shown["policy"]["policy"]["version"] == 7
    [row] = _config_changes(ctx)
    assert (row.actor, row.role, row.outcome) == (USERS[Role.ADMIN], "admin", "ok")
    assert row.detail == {
        "what": "policy",
        "from_version": load_policy(CONFIGURED_POLICY).version,
        "to_version": 7,
    }


@pytest.mark.parametrize("version", [1, 2], ids=["same", "lower"])
def test_put_policy_without_a_higher_version_is_409_and_audited_refused(
    client: TestClient, ctx: ApiContext, active_policy: Path, version: int
) -> None:
    if version == 2:  # make the active version 3 first, through the API
        first = client.put("/api/v1/config/policy", json=_policy(3), headers=auth(Role.ADMIN))
        assert first.status_code == 200, first.text
    active = load_policy(active_policy).version
    before = active_policy.read_bytes()
    response = client.put("/api/v1/config/policy", json=_policy(version), headers=auth(Role.ADMIN))
    assert response.status_code == 409
    assert f"active version {active}" in response.json()["detail"]
    assert f"got {version}" in response.json()["detail"]
    assert active_policy.read_bytes() == before
    row = _config_changes(ctx)[0]
    assert row.outcome == "refused"
    assert row.detail == {"what": "policy", "from_version": active, "to_version": version}


@pytest.mark.parametrize(
    "body",
    [
        {"lung_nodule": {"min_score": 0.4}},  # no version
        {"version": 0},
        {"version": 2, "lung_nodule": {"min_score": 1.5}},
        {"version": 2, "lung_nodule": {"urgent_diameter_mm": 8.0, "unknown": 1}},
        {"version": 2, "extra_section": {}},
    ],
    ids=["no-version", "version-0", "score-above-1", "unknown-field", "unknown-section"],
)
def test_put_policy_with_an_invalid_body_is_422_and_changes_nothing(
    client: TestClient, active_policy: Path, body: dict[str, object]
) -> None:
    before = active_policy.read_bytes()
    response = client.put("/api/v1/config/policy", json=body, headers=auth(Role.ADMIN))
    assert response.status_code == 422
    assert active_policy.read_bytes() == before


def test_put_policy_is_404_when_the_api_has_no_active_policy_file(
    tmp_path: Path, ctx: ApiContext
) -> None:
    with TestClient(create_app(dataclasses.replace(ctx, policy_file=None))) as client:
        response = client.put("/api/v1/config/policy", json=_policy(2), headers=auth(Role.ADMIN))
        shown = client.get("/api/v1/config", headers=auth(Role.ADMIN)).json()
    assert response.status_code == 404
    assert "active policy file" in response.json()["detail"]
    assert shown["policy"]["editable"] is False
    assert shown["policy"]["file"] == str(CONFIGURED_POLICY)


def test_get_config_is_404_when_the_api_has_no_settings(ctx: ApiContext) -> None:
    with TestClient(create_app(dataclasses.replace(ctx, settings=None))) as client:
        response = client.get("/api/v1/config", headers=auth(Role.ADMIN))
    assert response.status_code == 404
    assert "settings" in response.json()["detail"]


def test_put_policy_refuses_to_replace_an_unreadable_active_file(
    client: TestClient, ctx: ApiContext, active_policy: Path
) -> None:
    active_policy.write_text("version: [not, an, int]\n")
    response = client.put("/api/v1/config/policy", json=_policy(9), headers=auth(Role.ADMIN))
    assert response.status_code == 409
    assert "must be valid" in response.json()["detail"]
    assert _config_changes(ctx)[0].outcome == "refused"


def test_redact_url_masks_user_info_and_query_values() -> None:
    url = f"postgresql+psycopg://triage:{SECRET}@db:5432/triage?password={SECRET}&sslmode=require"
    assert redact_url(url) == "postgresql+psycopg://***@db:5432/triage?password=***&sslmode=***"
    assert (
        redact_url("sqlite:////srv/triage-data/triage.db") == "sqlite:////srv/triage-data/triage.db"
    )
