"""DICOMweb client (dicomweb-client): STOW-RS, QIDO-RS and WADO-RS against one node.

The same questions as :mod:`triage.adapters.pacs.scu`, over HTTP. The client's own retry loop is
switched off: the outbox owns retries, and :func:`instance_exists` lets it ask "was it delivered?"
before sending again, so a lost response never duplicates work. Every transport or HTTP failure
becomes one :class:`DeliveryError`.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset

from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.nodes import AuthKind, PacsNode
from triage.adapters.pacs.studies import (
    DEFAULT_MODALITIES,
    StudyHit,
    date_range_since,
    merge_hits,
    save_instance,
    study_hit,
)
from triage.core.study import hash_uid

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
QIDO_PAGE = 500
_STUDY_FIELDS = ("StudyDate", "StudyTime", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")


@dataclass(frozen=True, slots=True)
class StowFailure:
    """One instance a STOW-RS origin server refused, with its FailureReason (PS3.18 Table I.2-3)."""

    sop_instance_uid: str
    reason: int | None


@dataclass(frozen=True, slots=True)
class StowResult:
    """What a STOW-RS response says: the SOP Instance UIDs stored and those refused."""

    referenced_sop_uids: tuple[str, ...]
    failed: tuple[StowFailure, ...]

    @property
    def failed_sop_uids(self) -> tuple[str, ...]:
        """Return the refused SOP Instance UIDs."""
        return tuple(f.sop_instance_uid for f in self.failed)


def stow(node: PacsNode, paths: Sequence[Path]) -> StowResult:
    """Send DICOM files to ``node`` in one STOW-RS request and return the per-instance outcome.

    A 409 Conflict (every instance refused) is not raised: its FailedSOPSequence is returned, so
    the caller can tell a refused instance (do not resend as is) from an unreachable node.

    Raises:
        ValueError: ``node`` has no ``dicomweb_url``.
        DeliveryError: the node is unreachable, or answers another HTTP error.
    """
    datasets = [pydicom.dcmread(p) for p in paths]
    if not datasets:
        return StowResult((), ())
    client = _client(node, "STOW-RS")
    try:
        response = client.store_instances(datasets)
    except requests.HTTPError as e:
        if e.response is None or e.response.status_code != HTTPStatus.CONFLICT:
            raise _error(node, "STOW-RS", e) from e
        response = _json_dataset(e.response)
    except requests.RequestException as e:
        raise _error(node, "STOW-RS", e) from e
    referenced = tuple(
        str(item.ReferencedSOPInstanceUID) for item in response.get("ReferencedSOPSequence", [])
    )
    failed = tuple(
        StowFailure(
            str(item.ReferencedSOPInstanceUID),
            int(item.FailureReason) if item.get("FailureReason") is not None else None,
        )
        for item in response.get("FailedSOPSequence", [])
    )
    return StowResult(referenced, failed)


def qido_studies(
    node: PacsNode,
    *,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    since: datetime | None = None,
    exclude_uids: Collection[str] = frozenset(),
) -> list[StudyHit]:
    """Return the studies on ``node`` with one of ``modalities``, dated on or after ``since``.

    The same contract as :func:`triage.adapters.pacs.scu.find_studies`: one QIDO-RS query per
    modality, StudyDate matched by day, merged by StudyInstanceUID minus ``exclude_uids``.

    Raises:
        ValueError: ``node`` has no ``dicomweb_url``.
        DeliveryError: the node is unreachable or answers an HTTP error.
    """
    client = _client(node, "QIDO-RS")
    hits: list[StudyHit] = []
    for modality in modalities or ("",):
        filters = {"ModalitiesInStudy": modality, "StudyDate": date_range_since(since)}
        hits.extend(_search_studies(client, node, {k: v for k, v in filters.items() if v}))
    return merge_hits(hits, exclude_uids=exclude_uids)


def retrieve_study(node: PacsNode, study_uid: str, out_dir: Path) -> list[Path]:
    """Fetch a study with WADO-RS into ``out_dir`` and return the files written.

    Each instance is written durably under a hash of its SOP Instance UID, in the transfer syntax
    the server sent (dicomweb-client asks for the default, Explicit VR Little Endian).

    Raises:
        FileNotFoundError: ``out_dir`` is not an existing directory.
        ValueError: ``node`` has no ``dicomweb_url``.
        DeliveryError: the node is unreachable, answers an HTTP error (404 for an unknown
            study), or returns no instance.
    """
    if not out_dir.is_dir():
        raise FileNotFoundError(f"out_dir must be an existing directory, got {out_dir}")
    client = _client(node, "WADO-RS")
    written = []
    try:
        for ds in client.iter_study(study_uid):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            sop_uid = str(ds.SOPInstanceUID)
            written.append(
                save_instance(buffer.getvalue(), sop_instance_uid=sop_uid, out_dir=out_dir)
            )
    except requests.RequestException as e:
        raise _error(node, "WADO-RS", e) from e
    if not written:
        raise DeliveryError(
            f"WADO-RS of study {hash_uid(study_uid)} from node {node.name!r} must return at least "
            "one instance, got none"
        )
    return written


def _search_studies(
    client: DICOMwebClient, node: PacsNode, filters: dict[str, str]
) -> list[StudyHit]:
    """Page through a study search with limit/offset.

    dicomweb-client's ``get_remaining`` loops until an empty page: forever against a server that
    ignores ``offset`` (Orthanc 1.10 with DICOMweb plugin 1.7 does when ModalitiesInStudy is a
    filter); here a short page or a page with nothing new ends the search.
    """
    hits: dict[str, StudyHit] = {}
    offset = 0
    while True:
        try:
            page = client.search_for_studies(
                search_filters=filters, fields=list(_STUDY_FIELDS), limit=QIDO_PAGE, offset=offset
            )
        except requests.RequestException as e:
            raise _error(node, "QIDO-RS", e) from e
        new = [
            h
            for h in (study_hit(Dataset.from_json(item)) for item in page)
            if h.study_uid not in hits
        ]
        hits.update((h.study_uid, h) for h in new)
        if len(page) < QIDO_PAGE or not new:
            return list(hits.values())
        offset += len(page)


def instance_exists(node: PacsNode, sop_uid: str, *, study_uid: str) -> bool:
    """Return whether ``node`` holds the instance (QIDO-RS within the study).

    The outbox asks this before resending, so a delivery whose response was lost is not repeated.

    Raises:
        ValueError: ``node`` has no ``dicomweb_url``.
        DeliveryError: the node is unreachable or answers an HTTP error other than 404.
    """
    client = _client(node, "QIDO-RS")
    try:
        found = client.search_for_instances(
            study_instance_uid=study_uid, search_filters={"SOPInstanceUID": sop_uid}
        )
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code == HTTPStatus.NOT_FOUND:
            return False
        raise _error(node, "QIDO-RS", e) from e
    except requests.RequestException as e:
        raise _error(node, "QIDO-RS", e) from e
    return any(_sop_uid(item) == sop_uid for item in found)


def find_sr_series(node: PacsNode, study_uid: str) -> list[dict[str, object]]:
    """Return the study's SR series as DICOM JSON objects (QIDO-RS ``Modality=SR``).

    Raises:
        ValueError: ``node`` has no ``dicomweb_url``.
        DeliveryError: the node is unreachable or answers an HTTP error other than 404.
    """
    client = _client(node, "QIDO-RS")
    try:
        found = client.search_for_series(
            study_instance_uid=study_uid, search_filters={"Modality": "SR"}
        )
    except requests.HTTPError as e:
        if e.response is not None and e.response.status_code == HTTPStatus.NOT_FOUND:
            return []
        raise _error(node, "QIDO-RS", e) from e
    except requests.RequestException as e:
        raise _error(node, "QIDO-RS", e) from e
    return [dict(item) for item in found]


def _client(node: PacsNode, operation: str) -> DICOMwebClient:
    if node.dicomweb_url is None:
        raise ValueError(f"node {node.name!r} must have a dicomweb_url for {operation}, got none")
    session = requests.Session()
    headers = {}
    if node.auth.kind is AuthKind.BASIC and node.auth.username and node.auth.password:
        session.auth = (node.auth.username, node.auth.password.get_secret_value())
    elif node.auth.kind is AuthKind.BEARER and node.auth.token:
        headers["Authorization"] = f"Bearer {node.auth.token.get_secret_value()}"
    client = DICOMwebClient(
        node.dicomweb_url.rstrip("/"),
        session=session,
        headers=headers,
        timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    )
    client.set_http_retry_params(retry=False)
    return client


def _json_dataset(response: requests.Response) -> Dataset:
    try:
        return Dataset.from_json(response.json())
    except ValueError:
        return Dataset()


def _sop_uid(item: dict[str, dict[str, object]]) -> str | None:
    values = item.get("00080018", {}).get("Value")
    return str(values[0]) if isinstance(values, list) and values else None


def _error(node: PacsNode, operation: str, e: requests.RequestException) -> DeliveryError:
    response = getattr(e, "response", None)
    got = f"HTTP {response.status_code}" if response is not None else type(e).__name__
    return DeliveryError(f"{operation} on node {node.name!r} must succeed, got {got}")
