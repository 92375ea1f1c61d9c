"""Findings and the triage decision out as a Comprehensive 3D SR (TID 1500).

The document is AI output that nobody has verified: its SeriesDescription says so, and its flags
read PARTIAL / PRELIMINARY / UNVERIFIED. Every UID is derived from the study, the analysed
instances and the model versions (STYLE H19), so re-running the same models on the same images
yields the same SR, which a PACS treats as the same instance instead of piling up copies. Patient
and study attributes are copied from the source images, as the IOD requires; nothing here logs
them or puts them in a message or a file name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.valuerep import DT

from triage import __version__
from triage.core.findings import FractureFinding, NoduleFinding
from triage.core.priority import TriageDecision
from triage.dicom import sr_content as sc

SERIES_DESCRIPTION = "AI triage (unverified) - not for diagnostic use"
TASKS = frozenset({"lung_nodule", "fracture"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PATIENT_STUDY_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyID", "AccessionNumber", "StudyDate", "StudyTime",
)  # fmt: skip


def derive_uid(source_uid: str, purpose: str, model_version: str) -> str:
    """Return a UID that depends only on its inputs, so a re-run re-creates the same UID.

    UUID-derived UIDs under the ``2.25`` root (PS3.5 B.2) need no registered org root.

    >>> uid = derive_uid("1.2.3", "sr-instance", "nodule=1.0")
    >>> uid == derive_uid("1.2.3", "sr-instance", "nodule=1.0")
    True
    >>> uid.startswith("2.25.") and len(uid) <= 64
    True
    >>> uid == derive_uid("1.2.3", "sr-instance", "nodule=1.1")
    False
    """
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{source_uid}|{purpose}|{model_version}').int}"


@dataclass(frozen=True, slots=True)
class AlgorithmInfo:
    """One model as the SR identifies it (TID 4019), with ``task`` one of :data:`TASKS`."""

    name: str
    version: str
    weights_sha256: str
    task: str
    rescoring_sha256: str | None = None  # the card's second-stage classifier, when it has one

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError(f"AlgorithmInfo name and version must be non-empty, got {self!r}")
        for label, digest in (
            ("weights_sha256", self.weights_sha256),
            ("rescoring_sha256", self.rescoring_sha256 or "0" * 64),
        ):
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"{label} must be 64 lowercase hex digits, got {digest!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")


def model_version_key(algorithms: Sequence[AlgorithmInfo]) -> str:
    """Return the order-independent ``name=version`` list that every derived UID depends on.

    >>> a = AlgorithmInfo("nod", "1.2", "0" * 64, "lung_nodule")
    >>> b = AlgorithmInfo("frac", "0.3", "1" * 64, "fracture")
    >>> model_version_key([a, b]) == model_version_key([b, a]) == "frac=0.3+nod=1.2"
    True
    """
    return "+".join(sorted(f"{a.name}={a.version}" for a in algorithms))


def build_sr(
    *,
    findings: Sequence[NoduleFinding | FractureFinding],
    decision: TriageDecision,
    source_datasets: Sequence[Dataset],
    algorithms: Sequence[AlgorithmInfo],
    now: datetime,
    affine_lps: npt.NDArray[np.float64] | None = None,
    institution_name: str | None = None,
    manufacturer: str = "triage (open source)",
    series_number: int = 9901,
    instance_number: int = 1,
    previous_sr: Dataset | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Return the study's TID 1500 report: a planar ROI group per finding, plus the decision.

    A study without findings (ROUTINE, or NOT_ANALYSED) still gets a report of its decision alone.
    The SOP Instance UID also depends on the analysed instances and the policy version, because
    one UID must never name two contents (e.g. a NOT_ANALYSED report and a later successful one).

    Args:
        findings: the findings to report, in the order their tracking identifiers are numbered.
        decision: the study's priority and reasons, written as document-level evaluations.
        source_datasets: headers of the analysed images (one study); they become the evidence,
            and the first one gives the patient and study modules.
        algorithms: the models that ran, one per task; their versions key every derived UID.
        now: the content date and time (passed in so that output is reproducible).
        affine_lps: 4x4 voxel (i, j, k, 1) -> LPS mm of the CT volume the nodules' ``box_ijk`` index
            (triage.imaging ``Volume.affine_lps``); needed only when there are nodule findings.
        institution_name: written to InstitutionName when given.
        manufacturer: written to Manufacturer and to the device observer.
        series_number: SeriesNumber of the SR series.
        instance_number: InstanceNumber of the SR.
        previous_sr: an earlier report on the same study that this one replaces; referenced in
            the Predecessor Documents Sequence (ignored when it has this report's UID).

    Raises:
        ValueError: on empty sources or algorithms, sources from several studies, a nodule without
            ``affine_lps`` or a frame of reference, a fracture whose image is not among the sources,
            or a task with no (or two) algorithms.
    """
    _check_inputs(source_datasets, algorithms)
    study_uid = str(source_datasets[0].StudyInstanceUID)
    key = model_version_key(algorithms)
    ctx = _Context(study_uid, key, tuple(source_datasets), tuple(algorithms), affine_lps)
    root = sc.report_root(
        [_finding_group(n, f, ctx) for n, f in enumerate(findings, start=1)],
        sc.triage_evaluations(decision),
        observation_context=sc.device_observation_context(
            uid=derive_uid(manufacturer, "device-observer", key),
            manufacturer=manufacturer,
            model_name=key,
        ),
        procedures=sc.procedures_reported(source_datasets),
    )
    sop_uid = derive_uid(study_uid, _instance_purpose(source_datasets, decision), key)
    previous = (
        [previous_sr]
        if previous_sr is not None and str(previous_sr.SOPInstanceUID) != sop_uid
        else None
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=source_datasets,
        previous_versions=previous,
        content=root,
        series_instance_uid=derive_uid(study_uid, "sr-series", key),
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer=manufacturer,
        institution_name=institution_name,
        series_description=SERIES_DESCRIPTION,
        software_versions=_software_versions(algorithms),
        coding_schemes=[sc.private_coding_scheme()],
        content_date=now.date(),
        content_time=now.time(),
        series_date=now.date(),
        series_time=now.time(),
    )
    _pin_creation_times(sr, now)
    return sr


def write_sr(sr: Dataset, out_dir: Path) -> Path:
    """Write the SR atomically into ``out_dir`` and return its path.

    The file is named by a SHA-256 of the SOP Instance UID, never by DICOM values, and appears only
    complete: it is written to a temporary file, fsynced, then renamed over any earlier copy.

    Raises:
        FileNotFoundError: if ``out_dir`` is not an existing directory.
    """
    if not out_dir.is_dir():
        raise FileNotFoundError(f"out_dir must be an existing directory, got {out_dir}")
    target = out_dir / f"{hashlib.sha256(str(sr.SOPInstanceUID).encode()).hexdigest()}.dcm"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=".sr-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            sr.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(out_dir)
    return target


def _check_inputs(sources: Sequence[Dataset], algorithms: Sequence[AlgorithmInfo]) -> None:
    if not algorithms:
        raise ValueError("algorithms must name at least one model, got none")
    if not sources:
        raise ValueError("source_datasets must hold at least one header of the study, got none")
    studies = {ds.get("StudyInstanceUID") for ds in sources}
    if len(studies) != 1 or None in studies:
        raise ValueError(f"source_datasets must share one StudyInstanceUID, got {len(studies)}")
    missing = [kw for kw in _PATIENT_STUDY_TYPE2 if kw not in sources[0]]
    if missing:
        raise ValueError(f"source_datasets[0] must carry the type 2 attributes {missing}, got none")


@dataclass(frozen=True)
class _Context:
    """What every measurement group of one document needs besides its finding."""

    study_uid: str
    key: str
    sources: tuple[Dataset, ...]
    algorithms: tuple[AlgorithmInfo, ...]
    affine_lps: npt.NDArray[np.float64] | None


def _finding_group(
    n: int, finding: NoduleFinding | FractureFinding, ctx: _Context
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    kind = "nodule" if isinstance(finding, NoduleFinding) else "fracture"
    tracking = hd.sr.TrackingIdentifier(
        uid=derive_uid(ctx.study_uid, f"finding-{n}-{kind}-{finding.series_uid}", ctx.key),
        identifier=f"{finding.label} {n}",
    )
    if isinstance(finding, NoduleFinding):
        return sc.nodule_group(
            finding,
            tracking,
            algorithm_id=_algorithm_id(ctx.algorithms, "lung_nodule"),
            frame_of_reference_uid=_frame_of_reference(ctx.sources, finding.series_uid, n),
            affine_lps=_checked_affine(ctx.affine_lps),
        )
    return sc.fracture_group(
        finding,
        tracking,
        algorithm_id=_algorithm_id(ctx.algorithms, "fracture"),
        source_image=_source_image(ctx.sources, finding.sop_instance_uid, n),
    )


def _algorithm_id(algorithms: Sequence[AlgorithmInfo], task: str) -> hd.sr.AlgorithmIdentification:
    matches = [a for a in algorithms if a.task == task]
    if len(matches) != 1:
        raise ValueError(
            f"algorithms must hold exactly one model for task {task!r}, got {len(matches)}"
        )
    a = matches[0]
    parameters = [f"task={a.task}", f"weights_sha256={a.weights_sha256}"]
    if a.rescoring_sha256 is not None:  # the scores come from both stages: name both files
        parameters.append(f"rescoring_sha256={a.rescoring_sha256}")
    return hd.sr.AlgorithmIdentification(name=a.name, version=a.version, parameters=parameters)


def _checked_affine(affine_lps: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64]:
    if affine_lps is None:
        raise ValueError("affine_lps must be given when there are nodule findings, got None")
    affine = np.asarray(affine_lps, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine_lps must be a finite 4x4 matrix, got shape {affine.shape}")
    return affine


def _frame_of_reference(sources: Sequence[Dataset], series_uid: str, n: int) -> str:
    for ds in sources:
        if ds.get("SeriesInstanceUID") == series_uid and "FrameOfReferenceUID" in ds:
            return str(ds.FrameOfReferenceUID)
    raise ValueError(
        f"finding {n} must come from a source series with a FrameOfReferenceUID, got no such source"
    )


def _source_image(sources: Sequence[Dataset], sop_instance_uid: str, n: int) -> Dataset:
    for ds in sources:
        if ds.get("SOPInstanceUID") == sop_instance_uid:
            return ds
    raise ValueError(f"finding {n} must reference an image among source_datasets, got another one")


def _instance_purpose(sources: Sequence[Dataset], decision: TriageDecision) -> str:
    """Return the SOP Instance UID's purpose: the analysed instances and the policy version.

    One SOP Instance UID must never carry two contents, and the same study re-analysed with more
    images, or under another policy, gives another report; identical inputs still give the same UID.
    """
    evidence = "\n".join(sorted(str(ds.SOPInstanceUID) for ds in sources))
    digest = hashlib.sha256(evidence.encode()).hexdigest()
    return f"sr-instance|{digest}|policy-{decision.policy_version}"


def _software_versions(algorithms: Sequence[AlgorithmInfo]) -> list[str]:
    versions = [f"triage {__version__}", *sorted(f"{a.name} {a.version}" for a in algorithms)]
    return [v[:64] for v in versions]


def _pin_creation_times(sr: Dataset, now: datetime) -> None:
    """Replace highdicom's wall-clock stamps with ``now``, so that equal inputs give equal bytes."""
    sr.InstanceCreationDate = now.strftime("%Y%m%d")
    sr.InstanceCreationTime = now.strftime("%H%M%S.%f")
    for item in sr.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = DT(now)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
