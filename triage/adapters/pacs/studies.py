"""What a PACS says about its studies, and how fetched instances land on disk.

C-FIND and QIDO-RS answer the same question in two encodings; both become a :class:`StudyHit`,
so a poller does not care which one a node speaks. Fetched instances (C-GET, WADO-RS) are written
the way the engine's own receiver writes them: named by a hash of the SOP Instance UID, fsynced,
then renamed, so a crash never leaves half a file under a final name and no path holds PHI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

from pydicom import Dataset
from pydicom.valuerep import DA, TM

from triage.store.spool import write_durably

DEFAULT_MODALITIES = ("CT", "CR", "DX")


@dataclass(frozen=True, slots=True)
class StudyHit:
    """One study a PACS reported, with the attributes the poller decides on.

    ``study_date``/``study_time`` are the study's own (acquisition) date and time, not when the
    PACS stored it; ``None`` when the PACS left them empty or sent an invalid value.
    """

    study_uid: str
    study_date: date | None
    study_time: time | None
    modalities: tuple[str, ...]
    n_instances: int | None


def parse_da(value: object) -> date | None:
    """Return a DICOM DA value as a date, or ``None`` if empty or invalid.

    >>> parse_da("20000101")
    datetime.date(2000, 1, 1)
    >>> parse_da("2000") is None
    True
    """
    try:
        parsed = DA(str(value)) if value else None
    except ValueError:
        return None
    return None if parsed is None else date(parsed.year, parsed.month, parsed.day)


def parse_tm(value: object) -> time | None:
    """Return a DICOM TM value as a time, or ``None`` if empty or invalid.

    >>> parse_tm("114243.273000")
    datetime.time(11, 42, 43, 273000)
    """
    try:
        parsed = TM(str(value)) if value else None
    except ValueError:
        return None
    return (
        None
        if parsed is None
        else time(parsed.hour, parsed.minute, parsed.second, parsed.microsecond)
    )


def date_range_since(since: datetime | None) -> str:
    """Return the DA range matching key for studies dated on or after ``since``'s day.

    DICOM can only match StudyDate by day, so the time of day is dropped: a caller that wants only
    studies it has not seen passes ``exclude_uids`` as well.

    >>> date_range_since(datetime(2000, 1, 1, 13, 5))
    '20000101-'
    >>> date_range_since(None)
    ''
    """
    return "" if since is None else f"{since:%Y%m%d}-"


def study_hit(ds: Dataset) -> StudyHit:
    """Return the hit a study-level C-FIND or QIDO-RS response describes."""
    n = ds.get("NumberOfStudyRelatedInstances")
    return StudyHit(
        study_uid=str(ds.StudyInstanceUID),
        study_date=parse_da(ds.get("StudyDate")),
        study_time=parse_tm(ds.get("StudyTime")),
        modalities=tuple(str(m) for m in _values(ds.get("ModalitiesInStudy"))),
        n_instances=int(n) if n not in (None, "") else None,
    )


def _values(value: object) -> list[object]:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def merge_hits(hits: Iterable[StudyHit], *, exclude_uids: Collection[str]) -> list[StudyHit]:
    """Return the hits with one entry per study, minus excluded ones, in first-seen order.

    One query per modality can report a CT+DX study twice; the first report wins.
    """
    seen = set(exclude_uids)
    merged = []
    for hit in hits:
        if hit.study_uid not in seen:
            seen.add(hit.study_uid)
            merged.append(hit)
    return merged


def instance_path(out_dir: Path, sop_instance_uid: str) -> Path:
    """Return where an instance is written: ``<sha256 of the SOP Instance UID>.dcm``.

    >>> instance_path(Path("/x"), "1.2.3").name[:12]
    'c47f5b18b8a4'
    """
    digest = hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()
    return out_dir / f"{digest}.dcm"


def save_instance(data: bytes, *, sop_instance_uid: str, out_dir: Path) -> Path:
    """Write one Part 10 file durably (temp, fsync, rename, fsync dir) and return its path.

    Raises:
        OSError: the disk is full or not writable; no file is left under the final name.
    """
    path = instance_path(out_dir, sop_instance_uid)
    write_durably(path, data)
    return path
