"""Find DICOM files in a folder and group them into studies and series, from headers only.

Every file under the folder is opened with ``stop_before_pixels=True``; pixel data are read later,
and only for the series a task selects (:mod:`triage.dicom.series`). A file that is not DICOM, is a
DICOMDIR, is truncated, or repeats an instance already seen is never dropped silently: it is listed
in :attr:`ScanResult.skipped` with the reason.

Some anonymisers blank StudyInstanceUID / SeriesInstanceUID / SOPInstanceUID (the TotalSegmentator
sample does). Such files still form a study: the SOP UIDs fall back to the file meta header, and the
missing study or series UID is replaced by a deterministic ``2.25.`` surrogate derived from
non-identifying header values (dates, times, numbers, descriptions, frame of reference, folder).
``uids_derived`` marks these series, so nothing downstream mistakes a surrogate for a UID the sender
knows.

No object built here holds PatientName or PatientID, so any of them may be logged.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TypeVar

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from triage.core.study import SeriesRef

logger = logging.getLogger(__name__)

_ORIENTATION_DECIMALS = 4
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file that was not grouped, and why (never a patient identifier)."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class SeriesInput:
    """A series as found on disk: identity, file paths and the header facts selection needs.

    Multi-valued facts hold the *distinct* values seen across instances, so a series that mixes
    orientations or matrix sizes shows it without reading pixels.
    """

    study_uid: str
    series_uid: str
    modality: str
    body_part: str  # BodyPartExamined, upper case, "" when absent
    description: str  # SeriesDescription
    sop_class_uid: str  # the most common SOP Class UID of the instances
    paths: tuple[Path, ...]  # sorted
    study_description: str = ""
    protocol_name: str = ""
    series_number: int | None = None
    slice_thickness_mm: float | None = None  # median over instances / frames
    image_types: tuple[tuple[str, ...], ...] = ()  # distinct ImageType values
    rows_cols: tuple[tuple[int, int], ...] = ()  # distinct (Rows, Columns)
    orientations: tuple[tuple[float, ...], ...] = ()  # distinct ImageOrientationPatient (rounded)
    n_frames: int = 0  # total frames over all instances (1 per single-frame instance)
    max_frames_per_instance: int = 1
    presentation_intent: str = ""  # DX: "FOR PRESENTATION" / "FOR PROCESSING"
    uids_derived: bool = False  # study or series UID is a surrogate (header had none)

    @property
    def n_instances(self) -> int:
        """Return the number of files (instances) in the series."""
        return len(self.paths)

    @property
    def image_type(self) -> tuple[str, ...]:
        """Return the first distinct ImageType value (usually the only one)."""
        return self.image_types[0] if self.image_types else ()

    def as_ref(self) -> SeriesRef:
        """Return the identity the core reasons about (no paths, no header details)."""
        return SeriesRef(
            study_uid=self.study_uid,
            series_uid=self.series_uid,
            modality=self.modality,
            body_part=self.body_part,
            description=self.description,
            n_instances=self.n_instances,
        )


@dataclass(frozen=True, slots=True)
class StudyInput:
    """A study and its series, sorted by series number then UID."""

    study_uid: str
    series: tuple[SeriesInput, ...]


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a folder scan found: studies to triage and files it could not use."""

    studies: tuple[StudyInput, ...]
    skipped: tuple[SkippedFile, ...]


@dataclass(frozen=True, slots=True)
class _Header:
    path: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    uids_derived: bool
    dataset: Dataset


def scan_folder(path: str | os.PathLike[str]) -> ScanResult:
    """Read every file under ``path`` (any nesting); group the DICOM ones into studies and series.

    Args:
        path: a folder (searched recursively) or a single file.

    Returns:
        The studies found, and every file that was not used with the reason.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"path must be an existing folder or file, got {str(root)!r}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return scan_files(files)


def scan_files(files: Iterable[Path]) -> ScanResult:
    """Group the given files into studies and series (the service's spool knows its files).

    Unreadable or duplicate files are returned as skipped, with the reason, as in
    :func:`scan_folder`.
    """
    headers: list[_Header] = []
    skipped: list[SkippedFile] = []
    seen: dict[str, Path] = {}
    for file in files:
        header, reason = _read_header(file)
        if header is None:
            skipped.append(SkippedFile(file, reason))
        elif header.sop_instance_uid and header.sop_instance_uid in seen:
            first = seen[header.sop_instance_uid]
            skipped.append(SkippedFile(file, f"duplicate SOPInstanceUID, same instance as {first}"))
        else:
            seen.setdefault(header.sop_instance_uid, file)
            headers.append(header)
    n_derived = sum(h.uids_derived for h in headers)
    if n_derived:
        logger.warning("derived surrogate study/series UIDs for %d files without them", n_derived)
    return ScanResult(studies=_group(headers), skipped=tuple(skipped))


def _read_header(path: Path) -> tuple[_Header | None, str]:
    """Return the file's header, or None and why it cannot be used."""
    try:
        ds = dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        return None, "not a DICOM file (no DICM prefix / file meta)"
    except Exception as exc:  # noqa: BLE001 - any parser failure means "corrupt"; never PHI in reason
        return None, f"corrupt DICOM file ({type(exc).__name__} while reading the header)"
    meta = getattr(ds, "file_meta", None)
    media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    if media_class == MediaStorageDirectoryStorage or path.name.upper() == "DICOMDIR":
        return None, "DICOMDIR (a media index, not an instance)"
    sop_class = str(ds.get("SOPClassUID", "") or media_class)
    modality = str(ds.get("Modality", "") or "").strip()
    if not modality or not sop_class:
        return None, "incomplete DICOM header: Modality or SOPClassUID absent (truncated file?)"
    sop_uid = str(ds.get("SOPInstanceUID", "") or "") or (
        str(meta.get("MediaStorageSOPInstanceUID", "")) if meta is not None else ""
    )
    if not ds.get("SOPClassUID"):
        ds.SOPClassUID = sop_class
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    derived = not study_uid or not series_uid
    if not study_uid:
        study_uid = _surrogate_uid("study", _study_key(ds))
    if not series_uid:
        series_uid = _surrogate_uid("series", (study_uid, *_series_key(ds), str(path.parent)))
    return _Header(path, study_uid, series_uid, sop_uid, derived, ds), ""


def _study_key(ds: Dataset) -> tuple[str, ...]:
    """Return the values a surrogate study UID is derived from.

    FrameOfReferenceUID is included so that two anonymised patients scanned at the same (shifted)
    date and time are never merged; the price is that a study whose series have different frames
    of reference is split. No patient identifier (name, ID, accession number) is used.
    """
    keys = ("StudyDate", "StudyTime", "StudyID", "FrameOfReferenceUID")
    return tuple(str(ds.get(k, "") or "") for k in keys)


def _series_key(ds: Dataset) -> tuple[str, ...]:
    keys = ("Modality", "SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription")
    return tuple(str(ds.get(k, "") or "") for k in keys)


def _surrogate_uid(kind: str, parts: Iterable[str]) -> str:
    """Return a deterministic ``2.25.`` UID for a study or series that has none."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join(('triage', kind, *parts))).int}"


def _group(headers: Sequence[_Header]) -> tuple[StudyInput, ...]:
    by_study: dict[str, dict[str, list[_Header]]] = defaultdict(lambda: defaultdict(list))
    for header in headers:
        by_study[header.study_uid][header.series_uid].append(header)
    studies = []
    for study_uid in sorted(by_study):
        series = [_series_input(members) for members in by_study[study_uid].values()]
        series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))
        studies.append(StudyInput(study_uid=study_uid, series=tuple(series)))
    return tuple(studies)


def _series_input(members: Sequence[_Header]) -> SeriesInput:
    members = sorted(members, key=lambda h: h.path)
    datasets = [h.dataset for h in members]
    first = datasets[0]
    frames = [_n_frames(ds) for ds in datasets]
    thicknesses = [t for ds in datasets if (t := _slice_thickness_mm(ds)) is not None]
    return SeriesInput(
        study_uid=members[0].study_uid,
        series_uid=members[0].series_uid,
        modality=str(first.get("Modality", "")).strip().upper(),
        body_part=_text(first, "BodyPartExamined").upper(),
        description=_text(first, "SeriesDescription"),
        sop_class_uid=Counter(str(ds.SOPClassUID) for ds in datasets).most_common(1)[0][0],
        paths=tuple(h.path for h in members),
        study_description=_text(first, "StudyDescription"),
        protocol_name=_text(first, "ProtocolName"),
        series_number=_int_or_none(first.get("SeriesNumber")),
        slice_thickness_mm=float(median(thicknesses)) if thicknesses else None,
        image_types=_distinct(_image_type(ds) for ds in datasets),
        rows_cols=_distinct(rc for ds in datasets if (rc := _rows_cols(ds)) is not None),
        orientations=_distinct(o for ds in datasets if (o := orientation_of(ds)) is not None),
        n_frames=sum(frames),
        max_frames_per_instance=max(frames),
        presentation_intent=_text(first, "PresentationIntentType").upper(),
        uids_derived=any(h.uids_derived for h in members),
    )


def _distinct(values: Iterable[_T]) -> tuple[_T, ...]:
    """Return the distinct values, most common first (ties in first-seen order)."""
    return tuple(v for v, _ in Counter(values).most_common())


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _float_or_none(value: object) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _n_frames(ds: Dataset) -> int:
    n = _int_or_none(ds.get("NumberOfFrames"))
    return n if n is not None and n > 0 else 1


def _image_type(ds: Dataset) -> tuple[str, ...]:
    value = ds.get("ImageType")
    if value is None or value == "":
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().upper() for v in items)


def _rows_cols(ds: Dataset) -> tuple[int, int] | None:
    rows, cols = _int_or_none(ds.get("Rows")), _int_or_none(ds.get("Columns"))
    return (rows, cols) if rows is not None and cols is not None else None


def functional_group_value(ds: Dataset, sequence: str, keyword: str) -> object | None:
    """Return ``keyword`` from an Enhanced IOD's shared, else first per-frame, functional group.

    Classic (single-frame) instances keep the attribute at the top level; this looks there first.
    """
    if keyword in ds:
        top: object = ds.get(keyword)
        return top
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if not groups:
            continue
        items = groups[0].get(sequence)
        if items and keyword in items[0]:
            nested: object = items[0].get(keyword)
            return nested
    return None


def orientation_of(ds: Dataset) -> tuple[float, ...] | None:
    """Return ImageOrientationPatient (classic or Enhanced) rounded to 4 decimals, or None."""
    value = functional_group_value(ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    if not isinstance(value, Iterable) or isinstance(value, str):
        return None
    try:
        cosines = tuple(round(float(v), _ORIENTATION_DECIMALS) + 0.0 for v in value)
    except (TypeError, ValueError):
        return None
    return cosines if len(cosines) == 6 else None


def _slice_thickness_mm(ds: Dataset) -> float | None:
    return _float_or_none(functional_group_value(ds, "PixelMeasuresSequence", "SliceThickness"))


def read_headers(paths: Iterable[str | os.PathLike[str]]) -> list[Dataset]:
    """Read headers (no pixels) for use as SR evidence, repairing empty SOP UIDs from the file meta.

    Some anonymisers blank SOPClassUID / SOPInstanceUID in the data set but keep them in the file
    meta information (the TotalSegmentator sample does); the meta values are the same instance's.
    """
    out: list[Dataset] = []
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            if not ds.get("SOPClassUID") and meta.get("MediaStorageSOPClassUID"):
                ds.SOPClassUID = meta.MediaStorageSOPClassUID
            if not ds.get("SOPInstanceUID") and meta.get("MediaStorageSOPInstanceUID"):
                ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        out.append(ds)
    return out
