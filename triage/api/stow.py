"""STOW-RS (DICOM PS3.18 §10.5): store instances sent as ``multipart/related`` over HTTP.

Each part is one DICOM Part 10 file. The body is parsed as it streams in, so memory holds one
instance at a time; each instance goes through :func:`triage.store.ingest.accept` (fsynced, row
committed) before it is listed as stored, exactly as a DIMSE C-STORE is acknowledged.

Response (PS3.18 Table 10.5.3-1 and Annex I): ``application/dicom+json`` with a Referenced SOP
Sequence (0008,1199) for stored instances and a Failed SOP Sequence (0008,1198) with a Failure
Reason (0008,1197) for the others. HTTP 200 when all were stored, 202 when some were, 409 when none
were; 503 (with Retry-After) when none were because the server is out of resources, since the
sender should retry that request later unchanged. Failure reasons (PS3.18 Table I.2-2):

- ``0xA700`` out of resources (the spool's disk is above the fill threshold);
- ``0xA900`` data set does not match its SOP class (a required UID is missing or malformed);
- ``0xC000`` cannot understand (the part is not a DICOM Part 10 file, or not application/dicom);
- ``0x0110`` processing failure (the write failed).
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from python_multipart.multipart import MultipartParser, parse_options_header

from triage.api.errors import BadRequest, UnsupportedMediaType
from triage.store.db import Store
from triage.store.ingest import IngestPolicy, InvalidInstance, OutOfResources, accept
from triage.store.spool import Spool

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

logger = logging.getLogger(__name__)

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON = "application/dicom+json"
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110
MAX_HEADERS_PER_PART = 16
MAX_PREAMBLE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its media type (lower case, without parameters) and bytes."""

    media_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What happened to one part; ``failure`` is None when it was stored."""

    sop_class_uid: str
    sop_instance_uid: str
    failure: int | None
    study_uid: str = ""


def boundary_of(content_type: str) -> bytes:
    """Return the multipart boundary of a STOW-RS request's Content-Type.

    >>> boundary_of('multipart/related; type="application/dicom"; boundary=abc')
    b'abc'

    Raises:
        UnsupportedMediaType: not ``multipart/related`` with ``type="application/dicom"``.
        BadRequest: no boundary parameter.
    """
    media, params = parse_options_header(content_type)
    kind = params.get(b"type", b"").decode("latin-1").strip().lower()
    if media != b"multipart/related" or kind != DICOM_MEDIA_TYPE:
        raise UnsupportedMediaType(
            'Content-Type must be multipart/related; type="application/dicom", got '
            f"{media.decode('latin-1')[:40]!r} with type {kind[:40]!r}"
        )
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise BadRequest("Content-Type must have a boundary parameter, got none")
    return boundary


class _Collector:
    """MultipartParser callbacks that gather finished parts."""

    def __init__(self) -> None:
        self.done: deque[Part] = deque()
        self._data = bytearray()
        self._field = bytearray()
        self._value = bytearray()
        self._media = DICOM_MEDIA_TYPE
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_end": self._on_end,
            "on_part_begin": self._begin,
            "on_header_field": self._on_field,
            "on_header_value": self._on_value,
            "on_header_end": self._header_end,
            "on_part_data": self._on_data,
            "on_part_end": self._end,
        }

    def _on_end(self) -> None:
        self.ended = True

    def _begin(self) -> None:
        self._data, self._media = bytearray(), DICOM_MEDIA_TYPE

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._field.extend(data[start:end])

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value.extend(data[start:end])

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        self._data.extend(data[start:end])

    def _header_end(self) -> None:
        if bytes(self._field).strip().lower() == b"content-type":
            self._media = parse_options_header(bytes(self._value))[0].decode("latin-1")
        self._field, self._value = bytearray(), bytearray()

    def _end(self) -> None:
        self.done.append(Part(self._media, bytes(self._data)))
        self._data = bytearray()


async def _skip_preamble(chunks: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    """Drop what precedes the first delimiter (RFC 2046 preamble), which the parser refuses."""
    delimiter = b"--" + boundary
    head = bytearray()
    started = False
    async for chunk in chunks:
        if started:
            yield chunk
            continue
        head += chunk
        at = head.find(delimiter)
        if at >= 0:
            started = True
            yield bytes(head[at:])
        elif len(head) > MAX_PREAMBLE_BYTES:
            raise BadRequest(
                f"the body must start with the boundary within {MAX_PREAMBLE_BYTES} bytes, "
                "got no boundary"
            )
    if not started and head:
        yield bytes(head)  # no delimiter at all: let the parser say why


async def iter_parts(chunks: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[Part]:
    """Yield each part as soon as it has been received completely.

    Raises:
        BadRequest: the body is not valid multipart (the parser's message is not echoed).
    """
    collector = _Collector()
    parser = MultipartParser(
        boundary,
        collector.callbacks(),
        max_header_count=MAX_HEADERS_PER_PART,
    )
    try:
        async for chunk in _skip_preamble(chunks, boundary):
            parser.write(chunk)
            while collector.done:
                yield collector.done.popleft()
        parser.finalize()
    except ValueError as e:  # python-multipart raises MultipartParseError (a ValueError)
        raise BadRequest(f"the body must be valid multipart/related, got {type(e).__name__}") from e
    while collector.done:
        yield collector.done.popleft()
    if not collector.ended:  # the parser does not check this itself
        raise BadRequest("the body must end with the closing boundary, got a truncated body")


def _uids(ds: Dataset) -> tuple[str, str]:
    meta = getattr(ds, "file_meta", None)
    sop_class = str(ds.get("SOPClassUID", "") or (meta or {}).get("MediaStorageSOPClassUID", ""))
    sop_inst = str(
        ds.get("SOPInstanceUID", "") or (meta or {}).get("MediaStorageSOPInstanceUID", "")
    )
    return sop_class[:64], sop_inst[:64]


def store_part(
    part: Part,
    *,
    store: Store,
    spool: Spool,
    source: str,
    now: float,
    policy: IngestPolicy,
) -> StoreOutcome:
    """Make one part durable through the shared ingest path; never raises for bad input."""
    if part.media_type != DICOM_MEDIA_TYPE:
        return StoreOutcome("", "", CANNOT_UNDERSTAND)
    try:
        ds = dcmread(io.BytesIO(part.data), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - any parser failure means "cannot understand"
        return StoreOutcome("", "", CANNOT_UNDERSTAND)
    sop_class, sop_inst = _uids(ds)
    try:
        done = accept(
            part.data, ds, store=store, spool=spool, source=source, now=now, policy=policy
        )
    except OutOfResources:
        return StoreOutcome(sop_class, sop_inst, OUT_OF_RESOURCES)
    except InvalidInstance:
        return StoreOutcome(sop_class, sop_inst, DOES_NOT_MATCH_SOP_CLASS)
    except OSError:
        logger.exception("STOW-RS instance could not be written")
        return StoreOutcome(sop_class, sop_inst, PROCESSING_FAILURE)
    return StoreOutcome(sop_class, sop_inst, None, done.study_uid)


def _item(outcome: StoreOutcome) -> Dataset:
    item = Dataset()
    if outcome.sop_class_uid:
        item.ReferencedSOPClassUID = outcome.sop_class_uid
    if outcome.sop_instance_uid:
        item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    if outcome.failure is not None:
        item.FailureReason = outcome.failure
    return item


def response_body(outcomes: list[StoreOutcome]) -> dict[str, object]:
    """Return the Store Instances Response Module as DICOM JSON (PS3.18 Annex F)."""
    ds = Dataset()
    stored = [_item(o) for o in outcomes if o.failure is None]
    failed = [_item(o) for o in outcomes if o.failure is not None]
    if stored:
        ds.ReferencedSOPSequence = DicomSequence(stored)
    if failed:
        ds.FailedSOPSequence = DicomSequence(failed)
    body: dict[str, object] = ds.to_json_dict()
    return body


def response_status(outcomes: list[StoreOutcome]) -> int:
    """Return the HTTP status of a STOW-RS response (PS3.18 Table 10.5.3-1; 503 per §8.5).

    >>> ok, full = StoreOutcome("1", "2", None), StoreOutcome("1", "3", OUT_OF_RESOURCES)
    >>> bad = StoreOutcome("", "", CANNOT_UNDERSTAND)
    >>> [response_status(x) for x in ([ok], [ok, bad], [bad], [full], [full, bad])]
    [200, 202, 409, 503, 409]
    """
    failures = [o.failure for o in outcomes if o.failure is not None]
    if not failures:
        return 200
    if len(failures) < len(outcomes):
        return 202
    if all(f == OUT_OF_RESOURCES for f in failures):
        return 503
    return 409
