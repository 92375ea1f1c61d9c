"""Series selection per task: rules as data, best series chosen, a reason for every other one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydantic
import pytest
import yaml

from tests.factories import FAKE_PATIENT_ID, FAKE_PATIENT_NAME, make_ct_series, make_radiograph
from triage.core.errors import UnsupportedStudy
from triage.dicom.reader import SeriesInput, StudyInput, scan_folder
from triage.dicom.selection import (
    SeriesRules,
    Task,
    load_series_rules,
    no_series_reason,
    require_series,
    select_series,
)

RULES_PATH = Path(__file__).resolve().parents[3] / "configs" / "series_rules.yaml"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope="module")
def rules() -> SeriesRules:
    return load_series_rules(RULES_PATH)


def chest_ct(uid: str = "1.2.826.0.1.1", **changes: object) -> SeriesInput:
    """A qualifying chest CT built in memory: its paths do not exist, so nothing can read pixels."""
    base = SeriesInput(
        study_uid="1.2.826.0.1",
        series_uid=uid,
        modality="CT",
        body_part="CHEST",
        description="Lung 1.0",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        paths=tuple(Path(f"/nonexistent/{uid}/{n}.dcm") for n in range(120)),
        study_description="CT THORAX",
        series_number=3,
        slice_thickness_mm=1.0,
        image_types=(("ORIGINAL", "PRIMARY", "AXIAL"),),
        rows_cols=((512, 512),),
        orientations=(AXIAL,),
        n_frames=120,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def radiograph(uid: str, **changes: object) -> SeriesInput:
    base = SeriesInput(
        study_uid="1.2.826.0.1",
        series_uid=uid,
        modality="DX",
        body_part="WRIST",
        description="Wrist PA",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        paths=(Path(f"/nonexistent/{uid}.dcm"),),
        series_number=10,
        image_types=(("ORIGINAL", "PRIMARY"),),
        rows_cols=((2000, 1600),),
        n_frames=1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def study(*series: SeriesInput) -> StudyInput:
    return StudyInput(study_uid="1.2.826.0.1", series=series)


def nodule_reason(rules: SeriesRules, series: SeriesInput) -> str | None:
    return no_series_reason(select_series(study(series), rules), Task.LUNG_NODULE)


# --- the rules file --------------------------------------------------------------------------


def test_rules_file_is_versioned_and_covers_both_tasks(rules: SeriesRules) -> None:
    assert rules.version >= 1
    assert set(rules.tasks) == {Task.LUNG_NODULE, Task.FRACTURE}
    assert rules.tasks[Task.LUNG_NODULE].choose == "best"
    assert rules.tasks[Task.FRACTURE].choose == "all"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["tasks"]["lung_nodule"].update(kernel="B30f"), "Extra inputs"),
        (lambda d: d["tasks"].update(brain_bleed=d["tasks"]["fracture"]), "brain_bleed"),
        (
            lambda d: d["tasks"]["lung_nodule"].update(slice_thickness_mm={"min": 4, "max": 1}),
            "min must be <= max",
        ),
        (lambda d: d["tasks"]["lung_nodule"].update(choose="first"), "'best' or 'all'"),
        (lambda d: d.pop("version"), "version"),
    ],
    ids=["unknown-key", "unknown-task", "inverted-range", "bad-choice", "no-version"],
)
def test_rules_that_break_the_schema_are_refused(
    tmp_path: Path, mutate: object, match: str
) -> None:
    data = yaml.safe_load(RULES_PATH.read_text(encoding="utf-8"))
    mutate(data)  # type: ignore[operator]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match=match):
        load_series_rules(path)


# --- choosing the best series ----------------------------------------------------------------


def test_a_chest_ct_is_chosen_from_headers_alone(rules: SeriesRules) -> None:
    ct = chest_ct()
    selection = select_series(study(ct), rules)
    assert selection.chosen[Task.LUNG_NODULE] == (ct,)
    assert no_series_reason(selection, Task.LUNG_NODULE) is None
    assert require_series(selection, Task.LUNG_NODULE) == (ct,)


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        ({"n_frames": 300}, {"n_frames": 120}),
        ({"slice_thickness_mm": 0.625}, {"slice_thickness_mm": 1.25}),
        ({"series_number": 2}, {"series_number": 5}),
        ({"body_part": "CHEST", "n_frames": 100}, {"body_part": "", "n_frames": 300}),
    ],
    ids=["most-slices", "then-thinnest", "then-lowest-number", "explicit-chest-beats-unlabelled"],
)
def test_the_best_qualifying_series_is_chosen_and_the_other_says_why(
    rules: SeriesRules, winner: dict[str, object], loser: dict[str, object]
) -> None:
    best, other = chest_ct("1.2.9.1", **winner), chest_ct("1.2.9.2", **loser)
    selection = select_series(study(other, best), rules)
    assert selection.chosen[Task.LUNG_NODULE] == (best,)
    skipped = [s for s in selection.skipped if s.task is Task.LUNG_NODULE]
    assert len(skipped) == 1
    assert skipped[0].reason.startswith("qualifies, but series ")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"body_part": "ABDOMEN"}, "body part ABDOMEN"),
        ({"body_part": "HEAD"}, "body part HEAD"),
        (
            {"n_frames": 16},
            "series has 16 slices, fewer than 40 needed for nodule triage (truncated?)",
        ),
        ({"orientations": (CORONAL,)}, "orientation coronal, not axial"),
        ({"slice_thickness_mm": 5.0}, "slice thickness 5.00 mm, outside 0.5-3 mm"),
        ({"slice_thickness_mm": None}, "SliceThickness absent"),
        ({"image_types": (("ORIGINAL", "PRIMARY", "LOCALIZER"),)}, "is LOCALIZER"),
        ({"image_types": (("DERIVED", "SECONDARY", "AXIAL"),)}, "lacks ORIGINAL"),
        ({"orientations": (AXIAL, (1.0, 0.0, 0.0, 0.0, 0.996, 0.087))}, "mixed orientation"),
        ({"rows_cols": ((512, 512), (256, 256))}, "inconsistent Rows x Columns (512x512, 256x256)"),
        ({"modality": "SR"}, "modality SR, not CT"),
        ({"modality": "SEG"}, "modality SEG, not CT"),
        (
            {"sop_class_uid": "1.2.840.10008.5.1.4.1.1.7"},
            "SOP class Secondary Capture Image Storage",
        ),
    ],
)
def test_a_series_that_fails_a_nodule_rule_is_skipped_with_the_reason(
    rules: SeriesRules, changes: dict[str, object], reason: str
) -> None:
    message = nodule_reason(rules, chest_ct(**changes))
    assert message is not None
    assert message.startswith("no series qualifies for nodule triage: ")
    assert reason in message


def test_orientation_jitter_below_tolerance_is_not_mixed(rules: SeriesRules) -> None:
    jittered = chest_ct(orientations=(AXIAL, (1.0, 0.0, 0.0, 0.0, 0.9999, 0.0005)))
    assert nodule_reason(rules, jittered) is None


def test_an_abdominal_study_gives_one_short_reason(rules: SeriesRules) -> None:
    message = nodule_reason(rules, chest_ct(body_part="ABDOMEN"))
    assert message == "no series qualifies for nodule triage: body part ABDOMEN"


def test_partial_body_needs_a_chest_keyword_in_a_description(rules: SeriesRules) -> None:
    unlabelled = chest_ct(body_part="PARTIALBODY", study_description="", description="Body 3.0")
    labelled = chest_ct(body_part="PARTIALBODY", study_description="PET/CT Thorax")
    assert "body part PARTIALBODY, not a chest study" in (nodule_reason(rules, unlabelled) or "")
    assert nodule_reason(rules, labelled) is None


def test_a_study_with_several_failing_series_lists_each(rules: SeriesRules) -> None:
    selection = select_series(
        study(chest_ct("1.2.5.1", body_part="PELVIS"), chest_ct("1.2.5.2", modality="SR")), rules
    )
    with pytest.raises(UnsupportedStudy, match=r"body part PELVIS \| series [0-9a-f]{12} \(SR\)"):
        require_series(selection, Task.LUNG_NODULE)


def test_every_series_not_chosen_is_reported_for_every_task(rules: SeriesRules) -> None:
    series = (chest_ct("1.2.7.1"), chest_ct("1.2.7.2", n_frames=60), radiograph("1.2.7.3"))
    selection = select_series(study(*series), rules)
    pairs = {(s.series_uid_hash, s.task) for s in selection.skipped}
    chosen = {(s.series_uid, task) for task, picked in selection.chosen.items() for s in picked}
    assert len(pairs) + len(chosen) == len(series) * len(rules.tasks)


# --- radiographs -----------------------------------------------------------------------------


def test_every_qualifying_radiograph_is_analysed_whatever_the_body_part(rules: SeriesRules) -> None:
    wrist = radiograph("1.2.8.1", series_number=2)
    chest = radiograph(
        "1.2.8.2", body_part="CHEST", modality="CR", sop_class_uid="1.2.840.10008.5.1.4.1.1.1"
    )
    unlabelled = radiograph("1.2.8.3", body_part="")
    selection = select_series(study(unlabelled, chest, wrist), rules)
    assert set(selection.chosen[Task.FRACTURE]) == {wrist, chest, unlabelled}
    assert selection.chosen[Task.FRACTURE][0] == wrist  # lowest series number first


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"max_frames_per_instance": 3, "n_frames": 3}, "multi-frame images (3 frames)"),
        ({"image_types": (("DERIVED", "SECONDARY"),)}, "is SECONDARY"),
        ({"modality": "CT"}, "modality CT, not CR/DX"),
    ],
)
def test_a_radiograph_that_fails_a_fracture_rule_is_skipped(
    rules: SeriesRules, changes: dict[str, object], reason: str
) -> None:
    selection = select_series(study(radiograph("1.2.9.9", **changes)), rules)
    assert reason in (no_series_reason(selection, Task.FRACTURE) or "")


def test_derived_primary_cr_qualifies(rules: SeriesRules) -> None:
    cr = radiograph("1.2.9.8", modality="CR", image_types=(("DERIVED", "PRIMARY"),))
    assert select_series(study(cr), rules).chosen[Task.FRACTURE] == (cr,)


# --- from files on disk ----------------------------------------------------------------------


def test_a_mixed_study_on_disk_picks_the_chest_ct_and_explains_the_rest(
    tmp_path: Path, rules: SeriesRules
) -> None:
    make_ct_series(tmp_path / "ct", 45, study_uid="1.2.3", series_number=4)
    make_ct_series(
        tmp_path / "scout",
        1,
        study_uid="1.2.3",
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        orientation="coronal",
    )
    make_radiograph(tmp_path / "dx" / "a.dcm")
    scan = scan_folder(tmp_path)
    ct_study = next(s for s in scan.studies if s.study_uid == "1.2.3")
    selection = select_series(ct_study, rules)
    assert [s.n_instances for s in selection.chosen[Task.LUNG_NODULE]] == [45]
    scout_reason = next(
        s.reason for s in selection.skipped if s.task is Task.LUNG_NODULE and s.modality == "CT"
    )
    assert "is LOCALIZER" in scout_reason
    assert "orientation coronal" in scout_reason
    assert "fewer than 40" in scout_reason
    text = repr(selection) + repr(scan)
    assert FAKE_PATIENT_NAME not in text
    assert FAKE_PATIENT_ID not in text


def test_real_lidc_series_is_chosen_for_nodule_triage(lidc_dir: Path, rules: SeriesRules) -> None:
    (lidc,) = scan_folder(lidc_dir).studies
    selection = select_series(lidc, rules)
    assert [s.n_instances for s in selection.chosen[Task.LUNG_NODULE]] == [133]
    assert no_series_reason(selection, Task.FRACTURE) == (
        "no series qualifies for fracture triage: modality CT, not CR/DX"
    )


def test_real_16_slice_subset_is_rejected_as_too_short(
    shared_data: Path, rules: SeriesRules
) -> None:
    (subset,) = scan_folder(shared_data / "lidc-idri-0001-subset16").studies
    assert no_series_reason(select_series(subset, rules), Task.LUNG_NODULE) == (
        "no series qualifies for nodule triage: "
        "series has 16 slices, fewer than 40 needed for nodule triage (truncated?)"
    )


def test_real_abdominal_partial_body_ct_is_rejected_for_its_body_part(
    shared_data: Path, rules: SeriesRules
) -> None:
    (abdomen,) = scan_folder(shared_data / "non-chest-ct-totalseg").studies
    reason = no_series_reason(select_series(abdomen, rules), Task.LUNG_NODULE)
    assert reason is not None
    assert "body part PARTIALBODY, not a chest study" in reason


def test_real_nema_radiographs_are_chosen_for_fracture_triage(
    shared_data: Path, rules: SeriesRules
) -> None:
    scan = scan_folder(shared_data / "nema-wg04-cr")
    chosen = [select_series(s, rules).chosen[Task.FRACTURE] for s in scan.studies]
    assert sorted(sum(s.n_instances for s in picked) for picked in chosen) == [1, 2]
    body_parts = {s.body_part for picked in chosen for s in picked}
    assert body_parts == {"CHEST", "EXTREMITY"}
