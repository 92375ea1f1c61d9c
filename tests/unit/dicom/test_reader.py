"""Folder scanning: grouping into studies and series, header facts, and files that are skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.factories import (
    FAKE_PATIENT_ID,
    FAKE_PATIENT_NAME,
    make_ct_series,
    make_enhanced_ct,
    make_radiograph,
    write_corrupt_dicom,
    write_dicomdir,
    write_non_dicom,
    write_truncated_dicom,
)
from triage.dicom.reader import scan_folder


def test_non_dicom_truncated_and_dicomdir_files_are_skipped_and_listed(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path / "ct", 5)
    notes = write_non_dicom(tmp_path / "notes.txt")
    stub = write_truncated_dicom(tmp_path / "ct" / "stub.dcm", next(folder.glob("IM*.dcm")))
    dicomdir = write_dicomdir(tmp_path)
    result = scan_folder(tmp_path)
    reasons = {skipped.path: skipped.reason for skipped in result.skipped}
    assert reasons.keys() == {notes, stub, dicomdir}
    assert "not a DICOM file" in reasons[notes]
    assert "incomplete DICOM header" in reasons[stub]
    assert "DICOMDIR" in reasons[dicomdir]
    assert [s.n_instances for study in result.studies for s in study.series] == [5]


def test_corrupt_header_is_skipped_with_its_error_type(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 2)
    corrupt = write_corrupt_dicom(tmp_path / "corrupt.dcm", next(folder.glob("IM*.dcm")))
    result = scan_folder(tmp_path)
    assert [s.path for s in result.skipped] == [corrupt]
    assert result.skipped[0].reason == "corrupt DICOM file (OSError while reading the header)"
    assert result.studies[0].series[0].n_instances == 2


def test_nested_folders_group_into_studies_and_series(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "a" / "deep" / "s2", 3, study_uid="1.2.3", series_number=2)
    make_ct_series(tmp_path / "a" / "s3", 4, study_uid="1.2.3", series_number=3, seed=3)
    make_radiograph(tmp_path / "b" / "x" / "rg.dcm", modality="CR")
    result = scan_folder(tmp_path)
    assert len(result.studies) == 2
    ct_study = next(s for s in result.studies if s.study_uid == "1.2.3")
    assert [(s.series_number, s.n_instances) for s in ct_study.series] == [(2, 3), (3, 4)]
    assert all(s.paths == tuple(sorted(s.paths)) for s in ct_study.series)
    assert result.skipped == ()


def test_a_repeated_instance_is_skipped_as_a_duplicate(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path / "ct", 3)
    original = sorted(folder.glob("*.dcm"))[0]
    copy = tmp_path / "copy" / "again.dcm"
    copy.parent.mkdir()
    shutil.copy(original, copy)
    result = scan_folder(tmp_path)
    assert result.studies[0].series[0].n_instances == 3
    assert [s.path for s in result.skipped] == [original]  # "copy/" sorts before "ct/"
    assert "duplicate SOPInstanceUID" in result.skipped[0].reason


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_series_input_carries_the_header_facts_selection_needs(tmp_path: Path) -> None:
    folder = make_ct_series(
        tmp_path,
        4,
        thickness_mm=1.25,
        body_part="chest",
        series_description="Lung 1.25",
        overrides={2: {"ImageType": ["DERIVED", "SECONDARY", "AXIAL"]}},
    )
    series = scan_folder(folder).studies[0].series[0]
    assert series.modality == "CT"
    assert series.body_part == "CHEST"
    assert series.description == "Lung 1.25"
    assert series.study_description == "CT CHEST"
    assert series.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert series.slice_thickness_mm == pytest.approx(1.25)
    assert series.image_types == (
        ("ORIGINAL", "PRIMARY", "AXIAL"),
        ("DERIVED", "SECONDARY", "AXIAL"),
    )
    assert series.rows_cols == ((12, 10),)
    assert series.orientations == ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0),)
    assert (series.n_instances, series.n_frames, series.max_frames_per_instance) == (4, 4, 1)
    assert series.series_number == 2
    assert not series.uids_derived
    assert series.as_ref().n_instances == 4


def test_enhanced_ct_counts_frames_not_files(tmp_path: Path) -> None:
    make_enhanced_ct(tmp_path / "e.dcm", 7)
    series = scan_folder(tmp_path).studies[0].series[0]
    assert (series.n_instances, series.n_frames, series.max_frames_per_instance) == (1, 7, 7)
    assert series.slice_thickness_mm == pytest.approx(1.25)
    assert series.orientations == ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0),)


def test_blank_uids_get_a_deterministic_surrogate(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 3)
    for path in folder.glob("*.dcm"):
        ds = dcmread(path)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = ""
        ds.save_as(path)
    first, second = scan_folder(folder), scan_folder(folder)
    series = first.studies[0].series[0]
    assert series.uids_derived
    assert series.n_instances == 3
    assert series.series_uid.startswith("2.25.")
    assert series.study_uid == second.studies[0].study_uid
    assert series.series_uid == second.studies[0].series[0].series_uid


def test_nothing_scanned_holds_patient_name_or_id(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "ct", 3)
    write_non_dicom(tmp_path / "x.txt")
    text = repr(scan_folder(tmp_path))
    assert FAKE_PATIENT_NAME not in text
    assert FAKE_PATIENT_ID not in text
    assert FAKE_PATIENT_NAME.split("^")[0] not in text


def test_missing_folder_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="must be an existing folder or file"):
        scan_folder(tmp_path / "nope")


def test_real_anonymised_ct_without_uids_still_forms_one_series(shared_data: Path) -> None:
    result = scan_folder(shared_data / "non-chest-ct-totalseg")
    assert [s.path.name for s in result.skipped] == ["SOURCE.txt"]
    series = result.studies[0].series[0]
    assert series.uids_derived  # the files carry empty Study/Series/SOP Instance UIDs
    assert series.n_instances == 20
    assert series.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"  # from the file meta header
    assert series.body_part == "PARTIALBODY"
