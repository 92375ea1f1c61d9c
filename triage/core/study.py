"""Identity values of studies and series: UIDs and the few header facts the core reasons about."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeriesRef:
    """A series as the core sees it: identity plus the facts that decide which task applies."""

    study_uid: str
    series_uid: str
    modality: str
    body_part: str = ""
    description: str = ""
    n_instances: int = 0


@dataclass(frozen=True, slots=True)
class StudyRef:
    """A study: its UID and its series. Carries no patient identifiers on purpose."""

    study_uid: str
    series: tuple[SeriesRef, ...] = ()
    accession_hash: str = ""


def hash_uid(uid: str) -> str:
    """Return a short, stable, non-reversible tag for a UID, safe for logs (STYLE H22).

    >>> hash_uid("1.2.3")
    'c47f5b18b8a4'
    """
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:12]
