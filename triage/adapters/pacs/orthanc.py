"""Orthanc's REST API: what standard DICOM cannot do (study metadata, the change feed).

Standard queries (C-FIND, QIDO-RS) can only match a study's own date, so "studies stored since
I last looked" is not expressible in them. Orthanc numbers every change in ``/changes``; a poller
keeps the last sequence number as its watermark and asks for ``StableStudy`` events after it,
i.e. studies that stopped receiving instances ``StableAge`` seconds ago and are ready to triage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.nodes import AuthKind, PacsNode

TIMEOUT_S = 30.0
CHANGES_PAGE = 100


@dataclass(frozen=True, slots=True)
class StudyChanges:
    """Studies that became stable after a watermark, and the watermark to pass next time.

    ``done`` is false when more changes wait beyond this page; call again with ``last_seq``.
    """

    study_uids: tuple[str, ...]
    last_seq: int
    done: bool


def rest_client(node: PacsNode) -> httpx.Client:
    """Return an HTTP client for the node's REST root, with its credentials.

    Raises:
        ValueError: ``node`` has no ``rest_url``.
    """
    if node.rest_url is None:
        raise ValueError(f"node {node.name!r} must have a rest_url for Orthanc REST, got none")
    auth: httpx.Auth | None = None
    headers = {}
    if node.auth.kind is AuthKind.BASIC and node.auth.username and node.auth.password:
        auth = httpx.BasicAuth(node.auth.username, node.auth.password.get_secret_value())
    elif node.auth.kind is AuthKind.BEARER and node.auth.token:
        headers["Authorization"] = f"Bearer {node.auth.token.get_secret_value()}"
    return httpx.Client(
        base_url=node.rest_url.rstrip("/"), auth=auth, headers=headers, timeout=TIMEOUT_S
    )


def find_study_id(client: httpx.Client, study_uid: str) -> str | None:
    """Return Orthanc's identifier of a study (``POST /tools/lookup``), or ``None`` if absent.

    Raises:
        DeliveryError: Orthanc is unreachable or answers an HTTP error.
    """
    matches = _json(client, "POST", "/tools/lookup", content=study_uid)
    ids = [m["ID"] for m in matches if isinstance(m, dict) and m.get("Type") == "Study"]
    return str(ids[0]) if ids else None


def last_change(node: PacsNode) -> int:
    """Return the sequence number of Orthanc's latest change: the watermark for "from now on".

    Raises:
        ValueError: ``node`` has no ``rest_url``.
        DeliveryError: Orthanc is unreachable or answers an HTTP error.
    """
    with rest_client(node) as client:
        return int(_json(client, "GET", "/changes", params={"last": ""})["Last"])


def stable_studies_since(node: PacsNode, *, since_seq: int) -> StudyChanges:
    """Return the StudyInstanceUIDs of studies that became stable after change ``since_seq``.

    A study is reported once per time it becomes stable (again, after new instances arrive), so
    callers still de-duplicate against the studies they have handled.

    Raises:
        ValueError: ``node`` has no ``rest_url``, or ``since_seq`` is negative.
        DeliveryError: Orthanc is unreachable or answers an HTTP error.
    """
    if since_seq < 0:
        raise ValueError(f"since_seq must be >= 0, got {since_seq}")
    with rest_client(node) as client:
        page = _json(client, "GET", "/changes", params={"since": since_seq, "limit": CHANGES_PAGE})
        uids: list[str] = []
        for change in page["Changes"]:
            if change["ChangeType"] == "StableStudy":
                study = _json(client, "GET", f"/studies/{change['ID']}")
                uid = str(study["MainDicomTags"]["StudyInstanceUID"])
                if uid not in uids:
                    uids.append(uid)
    return StudyChanges(tuple(uids), int(page["Last"]), bool(page["Done"]))


def put_study_metadata(client: httpx.Client, study_id: str, name: str, value: str) -> None:
    """Set one study metadata item (it must be declared in Orthanc's ``UserMetadata``).

    Raises:
        DeliveryError: Orthanc is unreachable or answers an HTTP error.
    """
    _request(client, "PUT", f"/studies/{study_id}/metadata/{name}", content=value.encode())


def _request(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    content: str | bytes | None = None,
    params: dict[str, str | int] | None = None,
) -> httpx.Response:
    where = f"{method} /{path.split('/')[1]}"  # the resource kind only: ids and UIDs stay out
    try:
        response = client.request(method, path, content=content, params=params)
    except httpx.HTTPError as e:
        raise DeliveryError(
            f"Orthanc REST {where} at {client.base_url} must answer, got {type(e).__name__}"
        ) from e
    if response.is_error:
        raise DeliveryError(
            f"Orthanc REST {where} at {client.base_url} must succeed, "
            f"got HTTP {response.status_code}"
        )
    return response


def _json(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    content: str | bytes | None = None,
    params: dict[str, str | int] | None = None,
) -> Any:
    # Orthanc's JSON shapes are documented per route; callers index the keys they need.
    return _request(client, method, path, content=content, params=params).json()
