"""Round trips of the TID 1500 SR writer: build, write, read back with pydicom and highdicom."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom import Dataset, config
from pydicom.uid import UID, Comprehensive3DSRStorage, generate_uid

from triage.core.findings import Box2D, Box3D, FractureFinding, NoduleFinding
from triage.core.priority import Priority, TriageDecision, TriagePolicy, prioritise
from triage.dicom.outputs import SERIES_DESCRIPTION, AlgorithmInfo, build_sr, derive_uid, write_sr
from triage.dicom.sr_content import axial_rectangle_lps, pixel_rectangle
from triage.dicom.sr_reader import read_sr_findings, read_sr_triage
from triage.imaging.volume import affine_from_geometry

NOW = datetime(2024, 3, 1, 14, 5, 9, 250000)
PATIENT_ID = "SYN-PID-0042"
PATIENT_NAME = "Synthetic^Patient"
STUDY_UID = generate_uid(entropy_srcs=["unit-study"])
CT_SERIES_UID = generate_uid(entropy_srcs=["unit-ct-series"])
DX_SERIES_UID = generate_uid(entropy_srcs=["unit-dx-series"])
ORIGIN_LPS_MM = (-5.6, -5.6, -100.0)
SPACING_IJK_MM = (0.7, 0.7, 1.25)
CT_AFFINE = affine_from_geometry(ORIGIN_LPS_MM, np.eye(3), SPACING_IJK_MM)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture(autouse=True)
def _strict_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config.settings, "reading_validation_mode", config.RAISE)
    monkeypatch.setattr(config.settings, "writing_validation_mode", config.RAISE)


def _header(modality: str, sop_class_uid: str, series_uid: str, key: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = STUDY_UID, "1", "ACC-0042"
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240301", "101500", ""
    ds.Modality, ds.SOPClassUID, ds.Manufacturer = modality, sop_class_uid, "Synthetic"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, 2
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[key])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    return ds


def make_ct_series(n_slices: int = 5, size: int = 16) -> list[Dataset]:
    """Return axial CT headers (with tiny pixel data) whose geometry matches ``CT_AFFINE``."""
    slices = []
    for k in range(n_slices):
        ds = _header("CT", CT_IMAGE_STORAGE, CT_SERIES_UID, f"unit-ct-{k}")
        ds.InstanceNumber, ds.ImageType = k + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["unit-for"])
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [ORIGIN_LPS_MM[0], ORIGIN_LPS_MM[1], -100.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.25
        ds.Rows = ds.Columns = size
        ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = 1, -1024, 1
        ds.PixelData = np.zeros((size, size), np.int16).tobytes()
        slices.append(ds)
    return slices


def make_radiograph(size: int = 32) -> Dataset:
    """Return a DX (for presentation) header with 0.2 mm pixels."""
    ds = _header("DX", DX_IMAGE_STORAGE, DX_SERIES_UID, "unit-dx-0")
    ds.InstanceNumber, ds.Rows, ds.Columns = 1, size, size
    ds.PixelRepresentation, ds.ImagerPixelSpacing = 0, [0.2, 0.2]
    ds.PixelData = np.zeros((size, size), np.uint16).tobytes()
    return ds


def make_nodules() -> list[NoduleFinding]:
    return [
        NoduleFinding(
            center_lps_mm=(-0.35, -0.35, -97.5),
            diameter_mm=9.1,
            volume_mm3=400.5,
            score=0.91,
            series_uid=CT_SERIES_UID,
            box_ijk=Box3D((4, 4, 1), (12, 12, 4)),
        ),
        NoduleFinding(
            center_lps_mm=(-3.5, -2.8, -99.375),
            diameter_mm=4.2,
            volume_mm3=38.8,
            score=0.55,
            series_uid=CT_SERIES_UID,
            box_ijk=Box3D((2, 3, 0), (5, 6, 2)),
        ),
    ]


def make_fracture(image: Dataset) -> FractureFinding:
    return FractureFinding(
        box_px=Box2D((3.0, 4.0), (10.0, 20.0)),
        score=0.8,
        sop_instance_uid=str(image.SOPInstanceUID),
        series_uid=str(image.SeriesInstanceUID),
        width_mm=1.4,
        height_mm=3.2,
    )


def nodule_model(version: str = "1.0.0") -> AlgorithmInfo:
    return AlgorithmInfo("lung-nodule-det", version, "a" * 64, "lung_nodule")


def fracture_model(version: str = "0.3.1") -> AlgorithmInfo:
    return AlgorithmInfo("fracture-det", version, "b" * 64, "fracture")


def build_ct_sr(
    version: str = "1.0.0", affine: npt.NDArray[np.float64] | None = CT_AFFINE
) -> hd.sr.Comprehensive3DSR:
    nodules = make_nodules()
    return build_sr(
        findings=nodules,
        decision=prioritise(nodules, TriagePolicy()),
        source_datasets=make_ct_series(),
        algorithms=[nodule_model(version)],
        now=NOW,
        affine_lps=affine,
    )


def build_not_analysed_sr(sources: list[Dataset]) -> hd.sr.Comprehensive3DSR:
    return build_sr(
        findings=[],
        decision=prioritise([], TriagePolicy(), failures=["no series qualifies"]),
        source_datasets=sources,
        algorithms=[nodule_model()],
        now=NOW,
    )


def test_derive_uid_is_a_valid_uid_of_at_most_64_characters() -> None:
    uid = derive_uid(STUDY_UID, "sr-instance", "lung-nodule-det=1.0.0")
    assert UID(uid).is_valid
    assert len(uid) <= 64


def test_derive_uid_changes_with_each_of_its_inputs() -> None:
    base = derive_uid("1.2.3", "sr-series", "m=1")
    others = {derive_uid("1.2.4", "sr-series", "m=1"), derive_uid("1.2.3", "x", "m=1")}
    others.add(derive_uid("1.2.3", "sr-series", "m=2"))
    assert base not in others
    assert len(others) == 3


def test_algorithm_info_rejects_an_unknown_task() -> None:
    with pytest.raises(ValueError, match=r"task must be one of .*got 'liver'"):
        AlgorithmInfo("m", "1", "a" * 64, "liver")


def test_algorithm_info_rejects_a_weights_hash_that_is_not_sha256() -> None:
    with pytest.raises(ValueError, match="weights_sha256 must be 64 lowercase hex digits"):
        AlgorithmInfo("m", "1", "abc", "fracture")
    with pytest.raises(ValueError, match="rescoring_sha256 must be 64 lowercase hex digits"):
        AlgorithmInfo("m", "1", "a" * 64, "fracture", rescoring_sha256="A" * 64)


def test_a_rescoring_stage_is_identified_beside_the_detector_weights(tmp_path: Path) -> None:
    """Scores from a two-stage card depend on both files: TID 4019 names both hashes."""
    nodules = make_nodules()
    staged = AlgorithmInfo("lung-nodule-det", "1.0.0", "a" * 64, "lung_nodule", "c" * 64)
    sr = build_sr(
        findings=nodules,
        decision=prioritise(nodules, TriagePolicy()),
        source_datasets=make_ct_series(),
        algorithms=[staged],
        now=NOW,
        affine_lps=CT_AFFINE,
    )
    back = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(write_sr(sr, tmp_path)))
    for group in back.content.get_planar_roi_measurement_groups():
        assert _texts(group, "111002") == [
            "task=lung_nodule",
            f"weights_sha256={'a' * 64}",
            f"rescoring_sha256={'c' * 64}",
        ]


def test_ct_report_reads_back_one_group_per_nodule(tmp_path: Path) -> None:
    found = read_sr_findings(write_sr(build_ct_sr(), tmp_path))
    assert [f["finding_type"] for f in found] == ["Nodule", "Nodule"]
    assert [f["tracking_identifier"] for f in found] == ["nodule 1", "nodule 2"]
    assert found[0]["measurements"]["Diameter"] == (9.1, "mm")
    assert found[0]["measurements"]["Volume"] == (400.5, "mm3")
    assert found[1]["measurements"]["Certainty of Finding"] == (55.0, "{0:100}")
    assert {f["algorithm_version"] for f in found} == {"1.0.0"}
    uids = [f["tracking_uid"] for f in found]
    assert len(set(uids)) == 2
    assert all(u is not None and UID(u).is_valid for u in uids)


def test_ct_report_is_a_highdicom_measurement_report_with_3d_regions(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_sr(build_ct_sr(), tmp_path))
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    region = groups[0].roi
    assert isinstance(region, hd.sr.ImageRegion3D)
    assert region.graphic_type == hd.sr.GraphicTypeValues3D.POLYGON
    assert region.frame_of_reference_uid == make_ct_series()[0].FrameOfReferenceUID
    np.testing.assert_allclose(
        region.value[0], np.array([-2.8, -2.8, -96.875]), atol=1e-4
    )  # corners map as-is (voxel-centre coordinates)
    for group in groups:  # TID 4019 on every group
        assert _texts(group, "111001") == ["lung-nodule-det"]
        assert _texts(group, "111003") == ["1.0.0"]
        assert _texts(group, "111002") == ["task=lung_nodule", f"weights_sha256={'a' * 64}"]


def _texts(group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations, dcm_code: str) -> list[str]:
    return [
        str(item.TextValue)
        for item in group[0].ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == dcm_code
    ]


def test_nodule_outline_is_the_box_section_through_its_centre_slice() -> None:
    outline = axial_rectangle_lps(Box3D((4, 4, 1), (12, 12, 4)), CT_AFFINE)
    assert outline.shape == (5, 3)
    np.testing.assert_array_equal(outline[0], outline[-1])
    extent = outline.max(axis=0) - outline.min(axis=0)
    np.testing.assert_allclose(extent, [8 * 0.7, 8 * 0.7, 0.0], atol=1e-9)
    np.testing.assert_allclose(
        outline[:4].mean(axis=0), [-5.6 + 8 * 0.7, -5.6 + 8 * 0.7, -96.875], atol=1e-9
    )


def test_empty_boxes_are_rejected() -> None:
    with pytest.raises(ValueError, match="box_ijk must have max > min along i and j"):
        axial_rectangle_lps(Box3D((4, 4, 1), (4, 12, 4)), CT_AFFINE)
    with pytest.raises(ValueError, match="box_px must have max > min in both axes"):
        pixel_rectangle(Box2D((3.0, 4.0), (3.0, 20.0)))


def test_radiograph_report_outlines_the_fracture_on_its_image(tmp_path: Path) -> None:
    image = make_radiograph()
    fracture = make_fracture(image)
    sr = build_sr(
        findings=[fracture],
        decision=prioritise([fracture], TriagePolicy()),
        source_datasets=[image],
        algorithms=[fracture_model()],
        now=NOW,
    )
    path = write_sr(sr, tmp_path)
    (found,) = read_sr_findings(path)
    assert found["finding_type"] == "Fracture"
    assert found["measurements"]["Width"] == (1.4, "mm")
    assert found["measurements"]["Height"] == (3.2, "mm")
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    (group,) = report.get_planar_roi_measurement_groups()
    region = group.roi
    assert isinstance(region, hd.sr.ImageRegion)
    assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    np.testing.assert_allclose(region.value, pixel_rectangle(fracture.box_px))
    (source,) = region.ContentSequence  # SELECTED FROM the analysed image
    assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert read_sr_triage(path)["priority"] == Priority.URGENT


def test_fracture_without_a_known_size_reports_only_its_certainty(tmp_path: Path) -> None:
    image = make_radiograph()
    sized = make_fracture(image)
    fracture = FractureFinding(
        sized.box_px, 0.6, sized.sop_instance_uid, sized.series_uid, None, None
    )
    sr = build_sr(
        findings=[fracture],
        decision=prioritise([fracture], TriagePolicy()),
        source_datasets=[image],
        algorithms=[fracture_model()],
        now=NOW,
    )
    (found,) = read_sr_findings(write_sr(sr, tmp_path))
    assert found["measurements"] == {"Certainty of Finding": (60.0, "{0:100}")}


def test_not_analysed_study_gets_a_report_of_its_decision_alone(tmp_path: Path) -> None:
    path = write_sr(build_not_analysed_sr(make_ct_series()[:1]), tmp_path)
    assert read_sr_findings(path) == []
    triage = read_sr_triage(path)
    assert triage["priority"] == Priority.NOT_ANALYSED
    assert triage["reasons"] == ["not analysed: no series qualifies"]
    assert triage["policy_version"] == "1"
    report = hd.sr.srread(path).content
    assert isinstance(report, hd.sr.MeasurementReport)
    names = [item.ConceptNameCodeSequence[0].CodeMeaning for item in report[0].ContentSequence]
    assert "Imaging Measurements" not in names
    assert "Qualitative Evaluations" in names


def test_routine_study_without_findings_gets_a_report(tmp_path: Path) -> None:
    decision = TriageDecision(Priority.ROUTINE, ("no finding meets the urgent rule",), 7)
    sr = build_sr(
        findings=[],
        decision=decision,
        source_datasets=[make_radiograph()],
        algorithms=[fracture_model()],
        now=NOW,
    )
    triage = read_sr_triage(write_sr(sr, tmp_path))
    assert triage == {
        "priority": Priority.ROUTINE,
        "reasons": ["no finding meets the urgent rule"],
        "policy_version": "7",
    }


def test_header_marks_the_report_as_unverified_ai_output(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_sr(build_ct_sr(), tmp_path))
    assert ds.SeriesDescription == SERIES_DESCRIPTION
    assert "unverified" in ds.SeriesDescription
    assert (ds.VerificationFlag, ds.CompletionFlag) == ("UNVERIFIED", "PARTIAL")
    assert ds.PreliminaryFlag == "PRELIMINARY"
    assert ds.Modality == "SR"
    assert ds.SOPClassUID == Comprehensive3DSRStorage
    assert (ds.ContentDate, ds.ContentTime) == ("20240301", "140509.250000")
    assert ds.InstanceCreationDate == "20240301"
    assert (ds.SeriesNumber, ds.InstanceNumber) == (9901, 1)


def test_patient_and_study_are_copied_and_every_source_is_evidence(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_sr(build_ct_sr(), tmp_path))
    assert (ds.PatientID, ds.StudyInstanceUID) == (PATIENT_ID, STUDY_UID)
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    (series,) = study.ReferencedSeriesSequence
    referenced = {item.ReferencedSOPInstanceUID for item in series.ReferencedSOPSequence}
    assert referenced == {s.SOPInstanceUID for s in make_ct_series()}


def test_rebuilding_gives_identical_uids_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_sr(build_ct_sr(), tmp_path / "a")
    second = write_sr(build_ct_sr(), tmp_path / "b")
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()
    tracking = [[f["tracking_uid"] for f in read_sr_findings(p)] for p in (first, second)]
    assert tracking[0] == tracking[1]


def test_another_model_version_gives_other_uids(tmp_path: Path) -> None:
    old, new = build_ct_sr("1.0.0"), build_ct_sr("1.1.0")
    assert old.SOPInstanceUID != new.SOPInstanceUID
    assert old.SeriesInstanceUID != new.SeriesInstanceUID
    old_path = write_sr(old, tmp_path)
    new_path = write_sr(new, tmp_path)
    old_tracking = {f["tracking_uid"] for f in read_sr_findings(old_path)}
    assert not old_tracking & {f["tracking_uid"] for f in read_sr_findings(new_path)}


def test_other_analysed_instances_give_another_report_in_the_same_series() -> None:
    full, one = build_not_analysed_sr(make_ct_series()), build_not_analysed_sr(make_ct_series()[:1])
    assert full.SOPInstanceUID != one.SOPInstanceUID
    assert full.SeriesInstanceUID == one.SeriesInstanceUID


def test_write_sr_names_the_file_by_a_hash_of_the_sop_instance_uid(tmp_path: Path) -> None:
    sr = build_ct_sr()
    path = write_sr(sr, tmp_path)
    assert path.name == f"{hashlib.sha256(sr.SOPInstanceUID.encode()).hexdigest()}.dcm"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert PATIENT_ID not in path.name


def test_write_sr_replaces_an_earlier_copy(tmp_path: Path) -> None:
    sr = build_ct_sr()
    path = write_sr(sr, tmp_path)
    path.write_bytes(b"stale")
    assert write_sr(sr, tmp_path) == path
    assert pydicom.dcmread(path).SOPInstanceUID == sr.SOPInstanceUID


def test_write_sr_requires_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="out_dir must be an existing directory"):
        write_sr(build_ct_sr(), tmp_path / "missing")


def test_nodules_need_the_affine_of_their_volume() -> None:
    with pytest.raises(ValueError, match="affine_lps must be given when there are nodule findings"):
        build_ct_sr(affine=None)
    with pytest.raises(
        ValueError, match=r"affine_lps must be a finite 4x4 matrix, got shape \(3, 3\)"
    ):
        build_ct_sr(affine=np.eye(3))


def test_a_fracture_on_an_image_outside_the_sources_is_rejected() -> None:
    fracture = make_fracture(make_radiograph())
    other = make_radiograph()
    other.SOPInstanceUID = generate_uid(entropy_srcs=["another image"])
    with pytest.raises(ValueError, match="finding 1 must reference an image among source_datasets"):
        build_sr(
            findings=[fracture],
            decision=prioritise([fracture], TriagePolicy()),
            source_datasets=[other],
            algorithms=[fracture_model()],
            now=NOW,
        )


def test_findings_need_exactly_one_model_for_their_task() -> None:
    nodules = make_nodules()
    with pytest.raises(ValueError, match="exactly one model for task 'lung_nodule', got 0"):
        build_sr(
            findings=nodules,
            decision=prioritise(nodules, TriagePolicy()),
            source_datasets=make_ct_series(),
            algorithms=[fracture_model()],
            now=NOW,
            affine_lps=CT_AFFINE,
        )


def test_sources_from_two_studies_are_rejected() -> None:
    sources = make_ct_series()
    sources[1].StudyInstanceUID = generate_uid(entropy_srcs=["another study"])
    with pytest.raises(ValueError, match="source_datasets must share one StudyInstanceUID, got 2"):
        build_not_analysed_sr(sources)


def test_errors_about_sources_carry_no_patient_identifiers() -> None:
    sources = make_ct_series()
    del sources[0].PatientBirthDate
    with pytest.raises(ValueError, match="must carry the type 2 attributes") as raised:
        build_not_analysed_sr(sources)
    assert PATIENT_ID not in str(raised.value)
    assert "Synthetic" not in str(raised.value)


def test_scores_outside_zero_to_one_are_rejected() -> None:
    image = make_radiograph()
    sized = make_fracture(image)
    fracture = FractureFinding(sized.box_px, 1.5, sized.sop_instance_uid, sized.series_uid, 1, 1)
    with pytest.raises(ValueError, match=r"finding score must be within 0..1, got 1.5"):
        build_sr(
            findings=[fracture],
            decision=prioritise([fracture], TriagePolicy()),
            source_datasets=[image],
            algorithms=[fracture_model()],
            now=NOW,
        )
