"""Read a TID 1500 SR back into plain values: the engine's own reports and third parties'.

Used by tests (round trips, STYLE H24), by the worklist when it shows an SR's content, and by
anyone checking what the engine wrote into a PACS.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import highdicom as hd
from highdicom.sr.templates import (  # the common base of highdicom's three group kinds
    _MeasurementsAndQualitativeEvaluations as _Group,
)
from pydicom import Dataset, dcmread
from pydicom.sr.coding import Code

from triage.core.priority import Priority
from triage.dicom import sr_content as sc


class SRFinding(TypedDict):
    """One measurement group of a TID 1500 report, as plain values."""

    finding_type: str | None  # code meaning, e.g. "Nodule"
    tracking_identifier: str | None
    tracking_uid: str | None
    measurements: dict[str, tuple[float, str]]  # concept meaning -> (value, UCUM unit code)
    algorithm_version: str | None


class SRTriage(TypedDict):
    """The engine's document-level triage evaluation, as plain values."""

    priority: Priority | None
    reasons: list[str]
    policy_version: str | None


def read_sr_findings(path: Path) -> list[SRFinding]:
    """Return the measurement groups of any TID 1500 SR file (the engine's or a third party's).

    Groups come planar first, then volumetric, then image-level, each in document order. A
    measurement with a derivation (e.g. "Mean") is keyed ``"<name> (<derivation>)"``, so that
    statistics of one quantity stay apart.

    Raises:
        ValueError: if the file is not an SR whose root is a TID 1500 Measurement Report.
    """
    report = hd.sr.srread(path).content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise ValueError(
            f"SR root must be a TID 1500 Measurement Report, got {type(report).__name__}"
        )
    groups = [
        *report.get_planar_roi_measurement_groups(),
        *report.get_volumetric_roi_measurement_groups(),
        *report.get_image_measurement_groups(),
    ]
    return [_finding_dict(g) for g in groups]


def read_sr_triage(path: Path) -> SRTriage:
    """Return the priority, reasons and policy version the engine wrote (empty for other SRs)."""
    out = SRTriage(priority=None, reasons=[], policy_version=None)
    for container in _children(dcmread(path), sc.QUALITATIVE_EVALUATIONS):
        for item in _children(container, sc.PRIORITY):
            value = item.ConceptCodeSequence[0]
            if value.CodingSchemeDesignator == sc.PRIVATE_SCHEME:
                out["priority"] = Priority(value.CodeValue)
        out["reasons"] += [str(item.TextValue) for item in _children(container, sc.TRIAGE_REASON)]
        for item in _children(container, sc.POLICY_VERSION):
            out["policy_version"] = str(item.TextValue)
    return out


def _finding_dict(group: _Group) -> SRFinding:
    measurements: dict[str, tuple[float, str]] = {}
    for m in group.get_measurements():
        name = str(m.name.meaning)
        if m.derivation is not None:
            name = f"{name} ({m.derivation.meaning})"
        key, copy = name, 2
        while key in measurements:
            key, copy = f"{name} #{copy}", copy + 1
        measurements[key] = (float(m.value), str(m.unit.value))
    versions = [
        item.TextValue
        for item in hd.sr.utils.find_content_items(group[0], name=sc.ALGORITHM_VERSION)
    ]
    return SRFinding(
        finding_type=None if group.finding_type is None else str(group.finding_type.meaning),
        tracking_identifier=group.tracking_identifier,
        tracking_uid=None if group.tracking_uid is None else str(group.tracking_uid),
        measurements=measurements,
        algorithm_version=str(versions[0]) if versions else None,
    )


def _children(ds: Dataset, name: Code) -> list[Dataset]:
    """Return the direct content items of ``ds`` whose concept name is ``name``."""
    return [
        item
        for item in ds.get("ContentSequence", [])
        if "ConceptNameCodeSequence" in item
        and item.ConceptNameCodeSequence[0].CodeValue == name.value
        and item.ConceptNameCodeSequence[0].CodingSchemeDesignator == name.scheme_designator
    ]
