"""Content items of the engine's TID 1500 Measurement Report: codes, regions, groups, the root.

Coded choices, and why (DICOM PS3.16 concepts unless marked private):

* Finding type: SCT 27925004 "Nodule" and SCT 72704001 "Fracture" (morphologic abnormalities),
  under the finding category SCT 49755003 "Morphologically abnormal structure".
* Finding site: SCT 39607008 "Lung structure" for nodules; SCT 272673000 "Bone structure" for
  fractures, because the fracture model does not say which bone.
* Score: NUM DCM 111012 "Certainty of Finding" ("the likelihood that the finding detected is in
  fact the type of finding identified", CID 6048) in UCUM ``{0:100}`` "range: 0:100", as the CAD
  templates (TID 4000 family) use it: a score of 0.87 is written as 87. Not DCM 111047
  "Probability of cancer": the model scores detections, not malignancy.
* Sizes: SCT 81827009 "Diameter", SCT 118565006 "Volume", SCT 103355008 "Width", DCM 121207
  "Height" (all in CID 7469), in UCUM ``mm`` / ``mm3``.
* Triage outcome: TID 1500 row 10, the document-level CONTAINER (C0034375, UMLS, "Qualitative
  Evaluations"), holding CODE SCT 260870009 "Priority" valued from the private coding scheme
  ``99TRIAGE`` (no standard code says "not analysed"), one TEXT per reason and the policy version.

Coordinates follow DICOM. SCOORD pixel coordinates put (0, 0) at the outer corner of the first
pixel, so a Box2D's index corners are used as they are. SCOORD3D are patient LPS millimetres and
the affine maps voxel *centres*, so a Box3D's faces sit half a voxel below its index corners.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import numpy.typing as npt
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from triage.core.findings import Box2D, Box3D, FractureFinding, NoduleFinding
from triage.core.priority import Priority, TriageDecision
from triage.imaging.geometry import voxel_to_lps

PRIVATE_SCHEME = "99TRIAGE"

NODULE = Code("27925004", "SCT", "Nodule")
FRACTURE = Code("72704001", "SCT", "Fracture")
LUNG_STRUCTURE = Code("39607008", "SCT", "Lung structure")
BONE_STRUCTURE = Code("272673000", "SCT", "Bone structure")
ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically abnormal structure")
DIAMETER = Code("81827009", "SCT", "Diameter")
VOLUME = Code("118565006", "SCT", "Volume")
WIDTH = Code("103355008", "SCT", "Width")
HEIGHT = Code("121207", "DCM", "Height")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
CERTAINTY_OF_FINDING = Code("111012", "DCM", "Certainty of Finding")
MM = Code("mm", "UCUM", "millimeter")
MM3 = Code("mm3", "UCUM", "cubic millimeter")
RANGE_0_100 = Code("{0:100}", "UCUM", "range: 0:100")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
PRIORITY = Code("260870009", "SCT", "Priority")
TRIAGE_REASON = Code("reason", PRIVATE_SCHEME, "Triage reason")
POLICY_VERSION = Code("policy-version", PRIVATE_SCHEME, "Triage policy version")
PRIORITY_CODES = {
    Priority.STAT: Code(Priority.STAT.value, PRIVATE_SCHEME, "STAT"),
    Priority.URGENT: Code(Priority.URGENT.value, PRIVATE_SCHEME, "Urgent"),
    Priority.ROUTINE: Code(Priority.ROUTINE.value, PRIVATE_SCHEME, "Routine"),
    Priority.NOT_ANALYSED: Code(Priority.NOT_ANALYSED.value, PRIVATE_SCHEME, "Not analysed"),
}
CT_PROCEDURE = Code("25045-6", "LN", "CT unspecified body region")
XR_PROCEDURE = Code("43468-8", "LN", "XR unspecified body region")
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")
_XR_MODALITIES = frozenset({"CR", "DX", "RG"})
ENGLISH = hd.sr.CodedConcept("en-US", "RFC5646", "English (United States)")


def private_coding_scheme() -> CodingSchemeIdentificationItem:
    """Return the declaration of the private ``99TRIAGE`` scheme (PS3.3 C.12.1.1.2 asks for one)."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name="triage engine codes",
        responsible_organization="triage (open source)",
    )


def axial_rectangle_lps(box: Box3D, affine_lps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return the closed outline (5 x 3, LPS mm) of the box's section through its centre slice.

    The box corners are continuous voxel coordinates with voxel centres at integers (the affine's
    convention), so they map through the affine as they are.

    >>> axial_rectangle_lps(Box3D((0, 0, 0), (2, 4, 3)), np.eye(4))[:3].tolist()
    [[0.0, 0.0, 1.5], [2.0, 0.0, 1.5], [2.0, 4.0, 1.5]]

    Raises:
        ValueError: if the box is empty along i or j.
    """
    (i0, j0, k0), (i1, j1, k1) = box.min_ijk, box.max_ijk
    if not (i1 > i0 and j1 > j0):
        raise ValueError(f"box_ijk must have max > min along i and j, got {box}")
    lo_i, hi_i, lo_j, hi_j = i0, i1, j0, j1
    k_mid = (k0 + k1) / 2.0
    corners_ijk = [(lo_i, lo_j), (hi_i, lo_j), (hi_i, hi_j), (lo_i, hi_j), (lo_i, lo_j)]
    return voxel_to_lps(affine_lps, [(i, j, k_mid) for i, j in corners_ijk])


def pixel_rectangle(box: Box2D) -> npt.NDArray[np.float64]:
    """Return the closed outline (5 x 2, column/row) of a 2-D box in SCOORD pixel coordinates.

    >>> pixel_rectangle(Box2D((1, 2), (5, 6))).tolist()[:3]
    [[1.0, 2.0], [5.0, 2.0], [5.0, 6.0]]

    Raises:
        ValueError: if the box is empty.
    """
    (c0, r0), (c1, r1) = box.min_col_row, box.max_col_row
    if not (c1 > c0 and r1 > r0):
        raise ValueError(f"box_px must have max > min in both axes, got {box}")
    return np.array([(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)], dtype=np.float64)


def _certainty(score: float) -> hd.sr.Measurement:
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"finding score must be within 0..1, got {score!r}")
    return hd.sr.Measurement(
        name=CERTAINTY_OF_FINDING, value=round(score * 100.0, 3), unit=RANGE_0_100
    )


def nodule_group(
    finding: NoduleFinding,
    tracking: hd.sr.TrackingIdentifier,
    *,
    algorithm_id: hd.sr.AlgorithmIdentification,
    frame_of_reference_uid: str,
    affine_lps: npt.NDArray[np.float64],
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Return the TID 1410 group of one nodule: an SCOORD3D outline, diameter, volume and certainty.

    A planar group through the centre slice (not a volumetric one) is what viewers draw, and the
    only group where highdicom accepts an SCOORD3D region; the volume still rides along as a NUM.
    """
    region = hd.sr.ImageRegion3D(
        graphic_type=hd.sr.GraphicTypeValues3D.POLYGON,
        graphic_data=axial_rectangle_lps(finding.box_ijk, affine_lps),
        frame_of_reference_uid=frame_of_reference_uid,
    )
    measurements = [
        hd.sr.Measurement(name=DIAMETER, value=finding.diameter_mm, unit=MM),
        hd.sr.Measurement(name=VOLUME, value=finding.volume_mm3, unit=MM3),
        _certainty(finding.score),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_region=region,
        finding_type=NODULE,
        finding_category=ABNORMAL_STRUCTURE,
        finding_sites=[hd.sr.FindingSite(LUNG_STRUCTURE)],
        algorithm_id=algorithm_id,
        measurements=measurements,
    )


def fracture_group(
    finding: FractureFinding,
    tracking: hd.sr.TrackingIdentifier,
    *,
    algorithm_id: hd.sr.AlgorithmIdentification,
    source_image: Dataset,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Return the TID 1410 group of one fracture: a closed SCOORD rectangle, sizes, certainty."""
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=pixel_rectangle(finding.box_px),
        source_image=hd.sr.SourceImageForRegion.from_source_image(source_image),
    )
    measurements = []
    if finding.width_mm is not None:
        measurements.append(hd.sr.Measurement(name=WIDTH, value=finding.width_mm, unit=MM))
    if finding.height_mm is not None:
        measurements.append(hd.sr.Measurement(name=HEIGHT, value=finding.height_mm, unit=MM))
    measurements.append(_certainty(finding.score))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_region=region,
        finding_type=FRACTURE,
        finding_category=ABNORMAL_STRUCTURE,
        finding_sites=[hd.sr.FindingSite(BONE_STRUCTURE)],
        algorithm_id=algorithm_id,
        measurements=measurements,
    )


def triage_evaluations(decision: TriageDecision) -> hd.sr.ContainerContentItem:
    """Return the document-level "Qualitative Evaluations": priority, reasons, policy version."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=contains)
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=PRIORITY, value=PRIORITY_CODES[decision.priority], relationship_type=contains
        )
    ]
    items += [
        hd.sr.TextContentItem(name=TRIAGE_REASON, value=reason, relationship_type=contains)
        for reason in decision.reasons
    ]
    items.append(
        hd.sr.TextContentItem(
            name=POLICY_VERSION, value=str(decision.policy_version), relationship_type=contains
        )
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def device_observation_context(
    *, uid: str, manufacturer: str, model_name: str
) -> hd.sr.ObservationContext:
    """Return the TID 1001 observation context naming the engine as the (only) observer device."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=uid, name="triage engine", manufacturer_name=manufacturer, model_name=model_name
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def procedures_reported(sources: Sequence[Dataset]) -> list[Code]:
    """Return the CID 100 procedure codes for the modalities among the sources.

    >>> [c.value for c in procedures_reported([Dataset()])]
    ['363679005']
    """
    modalities = {str(ds.get("Modality", "")) for ds in sources}
    procedures = [CT_PROCEDURE] if "CT" in modalities else []
    if modalities & _XR_MODALITIES:
        procedures.append(XR_PROCEDURE)
    return procedures or [IMAGING_PROCEDURE]


def report_root(
    groups: Sequence[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations],
    evaluations: hd.sr.ContainerContentItem,
    *,
    observation_context: hd.sr.ObservationContext,
    procedures: Sequence[Code],
) -> hd.sr.ContainerContentItem:
    """Return the TID 1500 root container, with "Imaging Measurements" only when there are groups.

    Built item by item, as ``highdicom.sr.MeasurementReport`` does, because highdicom 0.28 insists
    on at least one measurement group and cannot add TID 1500's "Qualitative Evaluations". TID 1500
    itself needs only one of "Imaging Measurements" (which then holds >= 1 group) or "Qualitative
    Evaluations", so a study without findings gets a conformant report of its evaluations alone.
    highdicom's ``MeasurementReport.from_sequence`` reads either form back.
    """
    root = hd.sr.ContainerContentItem(
        name=codes.cid7021.ImagingMeasurementReport, template_id="1500"
    )
    content = hd.sr.ContentSequence()
    content.extend(hd.sr.LanguageOfContentItemAndDescendants(ENGLISH))
    content.extend(observation_context)
    content.extend(
        hd.sr.CodeContentItem(
            name=codes.DCM.ProcedureReported,
            value=procedure,
            relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
        )
        for procedure in procedures
    )
    if groups:
        measurements = hd.sr.ContainerContentItem(
            name=codes.DCM.ImagingMeasurements,
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        measurements.ContentSequence = hd.sr.ContentSequence()
        for group in groups:
            measurements.ContentSequence.extend(group)
        content.append(measurements)
    content.append(evaluations)
    root.ContentSequence = content
    return root
