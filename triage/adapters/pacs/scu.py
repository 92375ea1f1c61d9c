"""Outbound DIMSE (pynetdicom SCU): echo, store results, find, move and get studies.

Each call opens one association, does its work and releases it; there is no pooled state, so a
PACS restart between calls costs nothing. Every way a peer can fail us (unreachable, rejected,
aborted, timed out, a failure status) becomes one :class:`DeliveryError` naming the node and the
operation, never the patient. Per-instance C-STORE statuses are returned, not raised, so the
outbox can retry only what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pydicom import Dataset
from pydicom import uid as dicom_uid
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import EventHandlerType
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import code_to_category

from triage.adapters.pacs.errors import DeliveryError
from triage.adapters.pacs.nodes import PacsNode
from triage.adapters.pacs.scp import IMAGE_SOP_CLASSES, SR_SOP_CLASSES
from triage.adapters.pacs.studies import (
    DEFAULT_MODALITIES,
    StudyHit,
    date_range_since,
    merge_hits,
    save_instance,
    study_hit,
)
from triage.core.study import hash_uid

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
ACSE_TIMEOUT_S = 10.0
DIMSE_TIMEOUT_S = 60.0
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1..255
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # C-STORE failure: the engine could not write the instance

_UNCOMPRESSED = (dicom_uid.ExplicitVRLittleEndian, dicom_uid.ImplicitVRLittleEndian)
_VERIFICATION = dicom_uid.UID("1.2.840.10008.1.1")
_FIND = dicom_uid.UID("1.2.840.10008.5.1.4.1.2.2.1")  # Study Root Q/R Information Model - FIND
_MOVE = dicom_uid.UID("1.2.840.10008.5.1.4.1.2.2.2")  # - MOVE
_GET = dicom_uid.UID("1.2.840.10008.5.1.4.1.2.2.3")  # - GET

# What C-GET asks to receive: the images the engine triages plus the outputs it reads back.
RETRIEVE_SOP_CLASSES: tuple[str, ...] = (
    *IMAGE_SOP_CLASSES,
    *SR_SOP_CLASSES,
    dicom_uid.SegmentationStorage,
)


@dataclass(frozen=True, slots=True)
class StoreResult:
    """The outcome of one C-STORE.

    ``status`` is the peer's DIMSE status, or ``None`` when the file was not sent because the peer
    accepted no presentation context for its SOP class and transfer syntax.
    """

    path: Path
    sop_instance_uid: str
    status: int | None

    @property
    def ok(self) -> bool:
        """Return whether the peer took the instance (Success, or a Warning such as coercion)."""
        return self.status is not None and code_to_category(self.status) in {"Success", "Warning"}


def echo(node: PacsNode, *, calling_ae: str) -> None:
    """Verify that ``node`` answers C-ECHO.

    Raises:
        DeliveryError: the association fails or the status is not Success.
    """
    ae = _make_ae(calling_ae)
    ae.add_requested_context(_VERIFICATION)
    with _associate(ae, node, operation="C-ECHO") as assoc:
        status = assoc.send_c_echo()
    _require_success(status, node, "C-ECHO")


def store_files(node: PacsNode, paths: Sequence[Path], *, calling_ae: str) -> list[StoreResult]:
    """Send DICOM Part 10 files to ``node`` over one association and return each status.

    Each file is offered in its own transfer syntax and in uncompressed ones, so a peer that
    cannot take a compressed syntax still gets the instance (pynetdicom converts between the
    uncompressed syntaxes only; a compressed file then comes back with ``status=None``).

    Raises:
        ValueError: a path is not a Part 10 file, or the files need more than 128 presentation
            contexts (send them in smaller batches).
        DeliveryError: the association fails, or the peer aborts or stops answering mid-way.
    """
    metas = [_file_meta(p) for p in paths]
    if not metas:
        return []
    contexts = _store_contexts([(m[0], m[2]) for m in metas])
    ae = _make_ae(calling_ae)
    ae.requested_contexts = contexts
    results: list[StoreResult] = []
    with _associate(ae, node, operation="C-STORE") as assoc:
        for path, (_, sop_uid, _) in zip(paths, metas, strict=True):
            if not assoc.is_established:
                raise DeliveryError(_lost(node, "C-STORE", len(results), len(metas)))
            try:
                status = assoc.send_c_store(path)
            except ValueError:  # no accepted presentation context for this file
                results.append(StoreResult(path, sop_uid, None))
                continue
            if "Status" not in status:
                raise DeliveryError(_lost(node, "C-STORE", len(results), len(metas)))
            results.append(StoreResult(path, sop_uid, int(status.Status)))
    return results


def find_studies(
    node: PacsNode,
    *,
    calling_ae: str,
    modalities: Sequence[str] = DEFAULT_MODALITIES,
    since: datetime | None = None,
    exclude_uids: Collection[str] = frozenset(),
) -> list[StudyHit]:
    """Return the studies on ``node`` with one of ``modalities``, dated on or after ``since``.

    One study-root C-FIND per modality (multi-valued ModalitiesInStudy matching is not portable
    across PACS), merged by StudyInstanceUID. ``since`` matches StudyDate by day, as DICOM allows;
    studies *stored* late for an old date are found by passing ``since=None`` together with
    ``exclude_uids``, the UIDs the caller has already handled.

    Raises:
        DeliveryError: the association fails, or the peer answers with a failure status.
    """
    ae = _make_ae(calling_ae)
    ae.add_requested_context(_FIND, list(_UNCOMPRESSED))
    hits: list[StudyHit] = []
    with _associate(ae, node, operation="C-FIND") as assoc:
        for modality in modalities or ("",):
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            query.StudyDate = date_range_since(since)
            query.StudyTime = ""
            query.ModalitiesInStudy = modality
            query.NumberOfStudyRelatedInstances = ""
            hits.extend(_find(assoc, query, node))
    return merge_hits(hits, exclude_uids=exclude_uids)


def move_study(node: PacsNode, study_uid: str, *, calling_ae: str, destination_ae: str) -> int:
    """Ask ``node`` to C-MOVE a study to ``destination_ae`` and return how many instances it sent.

    The destination (normally the engine's own Storage SCP) must be known to the node by that AE
    title; the instances arrive there, not here.

    Raises:
        DeliveryError: the association fails, the node refuses (e.g. unknown destination, 0xA801),
            any sub-operation fails, or nothing was moved (the study is not on the node).
    """
    ae = _make_ae(calling_ae)
    ae.add_requested_context(_MOVE, list(_UNCOMPRESSED))
    with _associate(ae, node, operation="C-MOVE") as assoc:
        final = _last_status(assoc.send_c_move(_study_identifier(study_uid), destination_ae, _MOVE))
    return _retrieved_count(final, node, "C-MOVE", study_uid)


def get_study(
    node: PacsNode,
    study_uid: str,
    *,
    calling_ae: str,
    out_dir: Path,
    sop_classes: Sequence[str] = RETRIEVE_SOP_CLASSES,
) -> list[Path]:
    """C-GET a study from ``node`` into ``out_dir`` and return the files written.

    Instances arrive as C-STORE sub-operations on the same association (no inbound port needed),
    each written durably under a hash of its SOP Instance UID before it is acknowledged.
    ``sop_classes`` are the storage classes offered for the SCP role (at most 127).

    Raises:
        FileNotFoundError: ``out_dir`` is not an existing directory.
        ValueError: more than 127 ``sop_classes``.
        DeliveryError: the association fails, any sub-operation fails (including one whose SOP class
            was not offered, or a local write error), or nothing was retrieved.
    """
    if not out_dir.is_dir():
        raise FileNotFoundError(f"out_dir must be an existing directory, got {out_dir}")
    if len(sop_classes) >= MAX_CONTEXTS:
        raise ValueError(f"sop_classes must number at most 127, got {len(sop_classes)}")
    written: list[Path] = []

    def on_store(event: evt.Event) -> int:
        sop_uid = str(cast(C_STORE, event.request).AffectedSOPInstanceUID)
        try:
            written.append(
                save_instance(event.encoded_dataset(), sop_instance_uid=sop_uid, out_dir=out_dir)
            )
        except OSError as e:
            logger.warning("C-GET instance not written: %s", e.strerror, extra={"node": node.name})
            return STATUS_OUT_OF_RESOURCES
        return STATUS_SUCCESS

    ae = _make_ae(calling_ae)
    ae.add_requested_context(_GET, list(_UNCOMPRESSED))
    for sop_class in sop_classes:
        ae.add_requested_context(sop_class, list(_UNCOMPRESSED))
    roles = [build_role(c, scp_role=True) for c in sop_classes]
    handlers = [(evt.EVT_C_STORE, on_store)]
    with _associate(ae, node, operation="C-GET", ext_neg=roles, handlers=handlers) as assoc:
        final = _last_status(assoc.send_c_get(_study_identifier(study_uid), _GET))
    _retrieved_count(final, node, "C-GET", study_uid)
    return written


def _make_ae(calling_ae: str) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = CONNECT_TIMEOUT_S
    ae.acse_timeout = ACSE_TIMEOUT_S
    ae.dimse_timeout = DIMSE_TIMEOUT_S
    ae.network_timeout = DIMSE_TIMEOUT_S
    return ae


@contextmanager
def _associate(
    ae: AE,
    node: PacsNode,
    *,
    operation: str,
    ext_neg: Sequence[SCP_SCU_RoleSelectionNegotiation] = (),
    handlers: Sequence[EventHandlerType] = (),
) -> Iterator[Association]:
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=cast(Any, list(ext_neg)),  # pynetdicom types it as a list of a private union
        evt_handlers=list(handlers),
    )
    if not assoc.is_established:
        outcome = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise DeliveryError(
            f"association with node {node.name!r} ({node.ae_title}@{node.host}:{node.port}) "
            f"must be accepted for {operation}, got {outcome}"
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _file_meta(path: Path) -> tuple[str, str, str]:
    try:
        meta = read_file_meta_info(path)
        return (
            str(meta.MediaStorageSOPClassUID),
            str(meta.MediaStorageSOPInstanceUID),
            str(meta.TransferSyntaxUID),
        )
    except (InvalidDicomError, AttributeError) as e:
        raise ValueError(f"paths must be DICOM Part 10 files with file meta, got {path}") from e


def _store_contexts(pairs: Sequence[tuple[str, str]]) -> list[PresentationContext]:
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for sop_class, syntax in pairs:
        if syntax not in _UNCOMPRESSED:
            wanted[(sop_class, (syntax,))] = None
        wanted[(sop_class, _UNCOMPRESSED)] = None
    if len(wanted) > MAX_CONTEXTS:
        raise ValueError(
            f"files must need at most {MAX_CONTEXTS} presentation contexts, got {len(wanted)}; "
            "send them in smaller batches"
        )
    return [build_context(c, list(ts)) for c, ts in wanted]


def _find(assoc: Association, query: Dataset, node: PacsNode) -> Iterator[StudyHit]:
    for status, identifier in assoc.send_c_find(query, _FIND):
        if "Status" not in status:
            raise DeliveryError(f"node {node.name!r} must answer C-FIND, got no response")
        category = code_to_category(int(status.Status))
        if category == "Pending" and identifier is not None:
            yield study_hit(identifier)
        elif category not in {"Pending", "Success"}:
            raise DeliveryError(
                f"C-FIND on node {node.name!r} must succeed, got status 0x{int(status.Status):04X}"
            )


def _study_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def _last_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> Dataset:
    final = Dataset()
    for status, _ in responses:
        final = status
        if "Status" not in status or code_to_category(int(status.Status)) != "Pending":
            break
    return final


def _retrieved_count(final: Dataset, node: PacsNode, operation: str, study_uid: str) -> int:
    if "Status" not in final:
        raise DeliveryError(f"node {node.name!r} must answer {operation}, got no final response")
    code = int(final.Status)
    completed = int(final.get("NumberOfCompletedSuboperations", 0) or 0)
    failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
    where = f"{operation} of study {hash_uid(study_uid)} from node {node.name!r}"
    if code_to_category(code) not in {"Success", "Warning"}:
        hint = ""
        if completed == failed == 0:  # Orthanc answers 0xC000 for both an unknown study and AE
            known = " and the destination AE known to it" if operation == "C-MOVE" else ""
            hint = f"; nothing transferred: is the study on the node{known}?"
        raise DeliveryError(
            f"{where} must succeed, got status 0x{code:04X} "
            f"({completed} completed, {failed} failed){hint}"
        )
    if failed:
        raise DeliveryError(f"{where} must transfer every instance, got {failed} failed")
    if completed == 0:
        raise DeliveryError(f"{where} must transfer at least one instance, got none")
    return completed


def _require_success(status: Dataset, node: PacsNode, operation: str) -> None:
    if "Status" not in status:
        raise DeliveryError(f"node {node.name!r} must answer {operation}, got no response")
    if int(status.Status) != STATUS_SUCCESS:
        raise DeliveryError(
            f"{operation} on node {node.name!r} must succeed, got status 0x{int(status.Status):04X}"
        )


def _lost(node: PacsNode, operation: str, done: int, total: int) -> str:
    return (
        f"association with node {node.name!r} must stay up for {operation}, got aborted after "
        f"{done} of {total} instances"
    )
