"""Inbound DIMSE: the engine's Storage SCP (C-ECHO, C-STORE), default deny.

An association is accepted only from a calling AE title *and* peer address on the allow list, and
only when it calls this engine's own AE title (like dcm4chee; Orthanc checks that only with
``DicomCheckCalledAet``): a PACS node configured with the wrong destination AE title is told so
instead of being served silently. Anything else gets an A-ASSOCIATE-RJ, an audit row and a
warning. Each received instance is kept exactly as sent (its transfer syntax, no decompression),
made durable by :func:`triage.store.ingest.accept`, and only then acknowledged. Every failure is
mapped here, once, to a named DIMSE status (STYLE H13, H20); the sender keeps the instance
and may retry.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from enum import IntEnum
from io import BytesIO
from types import TracebackType
from typing import Self

from pydicom import dcmread
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from triage.adapters.pacs.allow import HOW_TO_ADD, AllowList
from triage.core.study import hash_uid
from triage.store import audit
from triage.store.db import Store
from triage.store.ingest import IngestPolicy, InvalidInstance, OutOfResources, accept
from triage.store.spool import Spool

logger = logging.getLogger(__name__)

VERIFICATION = dicom_uid.UID("1.2.840.10008.1.1")  # Verification SOP Class (C-ECHO)


class StoreStatus(IntEnum):
    """The C-STORE response statuses this SCP sends (PS3.4 Table B.2-1)."""

    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (disk over threshold, or write failed)
    CANNOT_UNDERSTAND = 0xC000  # Error: Cannot understand (unparseable, or UIDs missing/invalid)
    PROCESSING_FAILURE = 0xC001  # Error: Cannot understand (unexpected failure here; logged)


# A-ASSOCIATE-RJ fields (PS3.8 9.3.4) for a caller that is not on the allow list.
REJECTED_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
REASON_CALLING_AE_NOT_RECOGNISED = 0x03
REASON_CALLED_AE_NOT_RECOGNISED = 0x07

NATIVE_SYNTAXES: tuple[str, ...] = (
    dicom_uid.ImplicitVRLittleEndian,
    dicom_uid.ExplicitVRLittleEndian,
)
STORAGE_SYNTAXES: tuple[str, ...] = (
    *NATIVE_SYNTAXES,
    dicom_uid.DeflatedExplicitVRLittleEndian,
    dicom_uid.JPEGBaseline8Bit,
    dicom_uid.JPEGLosslessSV1,
    dicom_uid.JPEGLSLossless,
    dicom_uid.JPEGLSNearLossless,
    dicom_uid.JPEG2000Lossless,
    dicom_uid.JPEG2000,
    dicom_uid.RLELossless,
)
# The images the engine triages plus the reports it may receive back (shared with the C-GET SCU).
IMAGE_SOP_CLASSES: tuple[str, ...] = (
    dicom_uid.CTImageStorage,
    dicom_uid.EnhancedCTImageStorage,
    dicom_uid.ComputedRadiographyImageStorage,
    dicom_uid.DigitalXRayImageStorageForPresentation,
    dicom_uid.DigitalXRayImageStorageForProcessing,
    dicom_uid.SecondaryCaptureImageStorage,
)
SR_SOP_CLASSES: tuple[str, ...] = (
    dicom_uid.BasicTextSRStorage,
    dicom_uid.EnhancedSRStorage,
    dicom_uid.ComprehensiveSRStorage,
    dicom_uid.Comprehensive3DSRStorage,
)
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    *IMAGE_SOP_CLASSES,
    *SR_SOP_CLASSES,
    dicom_uid.KeyObjectSelectionDocumentStorage,
)


class StorageSCP:
    """A listening Storage SCP: start it, let it receive on its own threads, stop it.

    Each association runs on its own pynetdicom thread, so :meth:`handle_store` may run
    concurrently; it shares nothing but the store and the spool, which are safe for that.

    Args:
        ae_title: the engine's own (called) AE title.
        host: the address to listen on, e.g. ``"0.0.0.0"`` or ``"127.0.0.1"``.
        port: the TCP port; 0 picks a free one (read it back from :attr:`port`).
        allow: who may associate (default deny).
        store: where instances, studies and audit rows are recorded.
        spool: where received files are written.
        ingest_policy: disk fill threshold and emergency locations.
        max_associations: concurrent associations accepted; more are rejected (transient).
        max_pdu_bytes: the largest PDU this SCP receives.
        clock: seconds since the epoch; a parameter so tests can pin receive times.
        check_called_ae: reject an association whose called AE title is not ``ae_title``.
    """

    def __init__(
        self,
        *,
        ae_title: str,
        host: str,
        port: int,
        allow: AllowList,
        store: Store,
        spool: Spool,
        ingest_policy: IngestPolicy,
        max_associations: int,
        max_pdu_bytes: int,
        clock: Callable[[], float] = time.time,
        check_called_ae: bool = True,
    ) -> None:
        if max_associations < 1:
            raise ValueError(f"max_associations must be >= 1, got {max_associations}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = any free port), got {port}")
        self._host, self._requested_port = host, port
        self._allow, self._store, self._spool = allow, store, spool
        self._policy, self._clock = ingest_policy, clock
        self._check_called_ae = check_called_ae
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_associations = max_associations
        self._ae.maximum_pdu_size = max_pdu_bytes
        self._ae.add_supported_context(VERIFICATION, list(NATIVE_SYNTAXES))
        for sop_class in STORAGE_SOP_CLASSES:
            self._ae.add_supported_context(sop_class, list(STORAGE_SYNTAXES))
        self._server: ThreadedAssociationServer | None = None

    @property
    def ae_title(self) -> str:
        """Return the SCP's own AE title."""
        return str(self._ae.ae_title)

    @property
    def port(self) -> int:
        """Return the bound port (the one the OS picked when 0 was asked for).

        Raises:
            RuntimeError: the SCP is not started.
        """
        if self._server is None:
            raise RuntimeError("StorageSCP must be started before its port is read; call start()")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start listening in background threads and return at once.

        Raises:
            RuntimeError: it is already started.
            OSError: the address cannot be bound (port in use, no such interface).
        """
        if self._server is not None:
            raise RuntimeError("StorageSCP must be stopped before it is started again")
        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_C_STORE, self.handle_store),
        ]
        self._server = self._ae.start_server(
            (self._host, self._requested_port), block=False, evt_handlers=handlers
        )
        logger.info("storage SCP %s listening on %s:%d", self.ae_title, self._host, self.port)

    def stop(self) -> None:
        """Stop listening, then abort associations still open; safe to call twice.

        An instance whose store had not returned is not acknowledged, so its sender retries it.
        """
        if self._server is None:
            return
        server, self._server = self._server, None
        server.shutdown()
        for assoc in self._ae.active_associations:
            assoc.abort()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def handle_store(self, event: Event) -> int:
        """Keep one C-STORE instance durably and return the DIMSE status to answer with.

        Success is returned only after :func:`~triage.store.ingest.accept` returned, i.e. the
        file is fsynced and its row committed. The instance is stored as received: the Part 10
        file is the peer's encoded data set behind file meta naming the negotiated syntax.
        """
        calling_ae = event.assoc.requestor.ae_title.strip()
        try:
            data = event.encoded_dataset()
            ds = dcmread(BytesIO(data), stop_before_pixels=True)
        except Exception as e:  # any parse failure: we cannot understand it
            logger.warning(
                "C-STORE from %s refused: the data set must be parseable DICOM, got %s",
                calling_ae,
                type(e).__name__,
            )
            return int(StoreStatus.CANNOT_UNDERSTAND)
        return int(self._ingest(data, ds, calling_ae))

    def _ingest(self, data: bytes, ds: Dataset, calling_ae: str) -> StoreStatus:
        study = {"study": hash_uid(str(ds.get("StudyInstanceUID", "") or ""))}
        try:
            accept(
                data,
                ds,
                store=self._store,
                spool=self._spool,
                source=f"dimse:{calling_ae}",
                now=self._clock(),
                policy=self._policy,
            )
        except OutOfResources as e:
            logger.warning("C-STORE from %s refused: %s", calling_ae, e, extra=study)
            return StoreStatus.OUT_OF_RESOURCES
        except InvalidInstance as e:
            logger.warning("C-STORE from %s refused: %s", calling_ae, e, extra=study)
            return StoreStatus.CANNOT_UNDERSTAND
        except OSError as e:
            logger.error(
                "C-STORE from %s refused: the spool write must succeed, got %s (errno %s)",
                calling_ae,
                e.strerror,
                e.errno,
                extra=study,
            )
            return StoreStatus.OUT_OF_RESOURCES
        except Exception as e:  # fail safe: never acknowledge, never crash the SCP
            # Frames only: str(e) of a database error embeds the bound row (patient name and ID).
            logger.error(
                "C-STORE from %s failed: unexpected %s (message withheld, may hold PHI)\n%s",
                calling_ae,
                type(e).__name__,
                "".join(traceback.format_tb(e.__traceback__)),
                extra=study,
            )
            return StoreStatus.PROCESSING_FAILURE
        return StoreStatus.SUCCESS

    def _on_requested(self, event: Event) -> None:
        """Reject a caller not on the allow list (default deny), then one calling another AE."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling_ae = str(getattr(request, "calling_ae_title", "") or "").strip()
        called_ae = str(getattr(request, "called_ae_title", "") or "").strip()
        ip = assoc.requestor.address
        if not self._allow.permits(calling_ae, ip):
            logger.warning(
                "association rejected: calling AE %r from %s must be on the DICOM allow list; %s",
                calling_ae,
                ip,
                HOW_TO_ADD,
            )
            self._reject(assoc, calling_ae, ip, called_ae, REASON_CALLING_AE_NOT_RECOGNISED)
        elif self._check_called_ae and called_ae != self.ae_title:
            logger.warning(
                "association rejected: %r from %s called AE title %r, but this engine is %r; set "
                "the destination AE title of this node in the PACS to %r (or set "
                "TRIAGE_CHECK_CALLED_AE=false to accept any called AE title)",
                calling_ae,
                ip,
                called_ae,
                self.ae_title,
                self.ae_title,
            )
            self._reject(assoc, calling_ae, ip, called_ae, REASON_CALLED_AE_NOT_RECOGNISED)

    def _reject(
        self, assoc: Association, calling_ae: str, ip: str, called_ae: str, reason: int
    ) -> None:
        """Audit, then send A-ASSOCIATE-RJ (permanent, service user) with ``reason``."""
        try:
            audit.record(
                self._store,
                action="association_rejected",
                actor=calling_ae,
                now=self._clock(),
                outcome="denied",
                remote=ip,
                detail={"called_ae": called_ae},
            )
        except Exception as e:  # the rejection stands even if the audit fails
            logger.error("audit of a rejected association failed: %s", type(e).__name__)
        # Audited before the peer hears of it, so the row exists once the caller sees the rejection.
        assoc.acse.send_reject(REJECTED_PERMANENT, SOURCE_SERVICE_USER, reason)
        # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ is out.
        assoc.kill()

    def _on_rejected(self, event: Event) -> None:
        """Log rejections pynetdicom makes itself (``max_associations`` reached, ...)."""
        assoc = event.assoc
        primitive = assoc.acceptor.primitive
        logger.warning(
            "association from %r at %s rejected (result %s, source %s, reason %s); "
            "if it is the association limit, raise TRIAGE_MAX_ASSOCIATIONS",
            assoc.requestor.ae_title.strip(),
            assoc.requestor.address,
            getattr(primitive, "result", None),
            getattr(primitive, "result_source", None),
            getattr(primitive, "diagnostic", None),
        )
