"""Accept one received instance: spool it durably, record it, update its study — then ack.

Every receiver (DIMSE C-STORE, STOW-RS, pull) calls :func:`accept` and acknowledges only after it
returns. Re-sending an instance is idempotent: the file is rewritten in place and the row kept, and
a study that was already analysed is re-analysed only when an instance it had not seen arrives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session

from triage.core.errors import TriageError
from triage.core.priority import Priority
from triage.core.scheduling import effective_priority, order_priority, schedule_key
from triage.core.study import hash_uid
from triage.store.db import Store
from triage.store.schema import FINISHED_STATES, Instance, JobState, Study
from triage.store.spool import Spool

logger = logging.getLogger(__name__)

NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "SEG", "REG", "OT"})
DEFAULT_EMERGENCY_LOCATIONS = ("ED", "ER", "EMERGENCY", "A&E", "ACCIDENT")


class OutOfResources(TriageError):
    """The spool's disk is too full to keep another instance; the sender should retry later."""


class InvalidInstance(TriageError):
    """The instance lacks what identifies it (Study/Series/SOP Instance UID)."""


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    """Limits the receivers share: disk fill threshold and what marks an emergency patient."""

    max_disk_fill: float = 0.95  # refuse above this used fraction of the spool's file system
    emergency_locations: Sequence[str] = DEFAULT_EMERGENCY_LOCATIONS


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :func:`accept` did: ``new`` is False for a re-sent instance."""

    sop_uid: str
    study_uid: str
    path: str
    new: bool


_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def _uid(ds: Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip().rstrip("\x00")
    if not value or len(value) > 64 or not _UID.match(value):
        raise InvalidInstance(f"{keyword} must be a valid DICOM UID, got {len(value)} characters")
    return value


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    return str(value if value is not None else "")[:limit]


def _order_terms(ds: Dataset) -> list[str]:
    terms = [_text(ds, "RequestedProcedurePriority", 16)]
    for item in ds.get("RequestAttributesSequence", None) or []:
        terms.append(_text(item, "RequestedProcedurePriority", 16))
    terms.append(_text(ds, "ScheduledProcedureStepPriority", 16))
    return [t for t in terms if t]


def _is_emergency(ds: Dataset, locations: Sequence[str]) -> bool:
    where = _text(ds, "CurrentPatientLocation", 64).upper()
    words = set(re.split(r"[^A-Z&]+", where))
    return any(loc.upper() in words for loc in locations)


def _slice_position(ds: Dataset) -> float | None:
    try:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ipp = [float(v) for v in ds.ImagePositionPatient]
    except (AttributeError, TypeError, ValueError):
        return None
    if len(iop) != 6 or len(ipp) != 3:
        return None
    normal = np.cross(iop[:3], iop[3:])
    return float(np.dot(normal, ipp))


def _int_or_none(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword, None)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def check_capacity(spool: Spool, policy: IngestPolicy) -> None:
    """Raise :class:`OutOfResources` when the disk is above the fill threshold."""
    used = 1.0 - spool.free_fraction()
    if used > policy.max_disk_fill:
        raise OutOfResources(
            f"spool disk must be at most {policy.max_disk_fill:.0%} full, got {used:.1%}; "
            "free space or raise TRIAGE_MAX_DISK_FILL"
        )


def accept(
    data: bytes,
    ds: Dataset,
    *,
    store: Store,
    spool: Spool,
    source: str,
    now: float,
    policy: IngestPolicy = IngestPolicy(),
) -> Accepted:
    """Make one instance durable (file fsynced, row committed); only then may it be acknowledged.

    Args:
        data: the instance as a DICOM Part 10 file (preamble and file meta included).
        ds: its parsed header (pixel data may be deferred); gives UIDs and the study's facts.
        store: where the instance and its study are recorded.
        spool: where the file goes.
        source: who sent it, e.g. ``"dimse:PACS1"`` (an AE title or user, never patient data).
        now: receive time, seconds since the epoch.
        policy: disk threshold and emergency locations.

    Raises:
        OutOfResources: the disk is above the threshold; nothing was written.
        InvalidInstance: a UID is missing or malformed; nothing was written.
        OSError: the write failed (e.g. disk full mid-write); nothing is left under the final name.
    """
    study_uid, series_uid = _uid(ds, "StudyInstanceUID"), _uid(ds, "SeriesInstanceUID")
    sop_uid = _uid(ds, "SOPInstanceUID")
    check_capacity(spool, policy)
    rel = spool.put(data, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    with store.session() as s:
        new = s.get(Instance, sop_uid) is None
        if new:
            s.add(_instance_row(ds, rel, len(data), source=source, now=now))
        _touch_study(s, ds, study_uid, new=new, source=source, now=now, policy=policy)
    if new:
        logger.debug("instance stored", extra={"study": hash_uid(study_uid)})
    return Accepted(sop_uid, study_uid, rel, new)


def _instance_row(ds: Dataset, rel: str, size: int, *, source: str, now: float) -> Instance:
    return Instance(
        sop_uid=_uid(ds, "SOPInstanceUID"),
        study_uid=_uid(ds, "StudyInstanceUID"),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID", 64)
        or str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))[:64],
        modality=_text(ds, "Modality", 16).upper(),
        path=rel,
        size_bytes=size,
        slice_pos_mm=_slice_position(ds),
        images_in_acquisition=_int_or_none(ds, "ImagesInAcquisition"),
        source=source[:80],
        received_at=now,
    )


def _touch_study(
    s: Session,
    ds: Dataset,
    study_uid: str,
    *,
    new: bool,
    source: str,
    now: float,
    policy: IngestPolicy,
) -> None:
    study = s.get(Study, study_uid, with_for_update=True)
    modality = _text(ds, "Modality", 16).upper()
    if study is None:
        study = Study(
            study_uid=study_uid,
            uid_hash=hash_uid(study_uid),
            state=JobState.RECEIVED.value,
            first_received_at=now,
            last_received_at=now,
            n_instances=0,
            modalities="",
            patient_name=_text(ds, "PatientName", 128),
            patient_id=_text(ds, "PatientID", 64),
            accession_number=_text(ds, "AccessionNumber", 64),
            study_description=_text(ds, "StudyDescription", 128),
            study_date=_text(ds, "StudyDate", 16),
            source=source[:80],
            order_priority="routine",
        )
        s.add(study)
    if not new:
        if study.state == JobState.RECEIVED.value:  # a re-send in progress: wait for the rest
            study.quiet_since = max(study.quiet_since or now, now)
        return
    mods = set(filter(None, study.modalities.split(","))) | ({modality} if modality else set())
    study.modalities = ",".join(sorted(mods))[:64]
    order = order_priority(
        [*_order_terms(ds), study.order_priority],
        emergency=_is_emergency(ds, policy.emergency_locations),
    )
    study.order_priority = order.value
    ai = Priority(study.ai_priority) if study.ai_priority else None
    study.effective_priority = effective_priority(order, ai).value
    study.schedule_key = schedule_key(order, mods - NON_IMAGE_MODALITIES)
    if modality in NON_IMAGE_MODALITIES:
        return  # reports and key-object notes (our own SR echoed back included) trigger nothing
    study.n_instances = (study.n_instances or 0) + 1
    study.last_received_at = now
    study.quiet_since = max(study.quiet_since or now, now)  # never shortens a restart grace
    if study.state in FINISHED_STATES or study.state in (JobState.COMPLETE, JobState.QUEUED):
        # A late instance: back to waiting for quiet; the next analysis replaces the SR.
        study.state = JobState.RECEIVED.value
        study.completed_at = None
