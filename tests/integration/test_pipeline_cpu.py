"""The whole analysis path on real sample data with tiny random-weight ONNX models (CPU only)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest
import yaml

from triage.adapters.folder import FolderSink
from triage.cli import build_engine
from triage.config import Settings
from triage.core.priority import Priority
from triage.dicom.reader import scan_folder
from triage.dicom.selection import Task
from triage.pipeline import StudyResult, analyse_all

pytestmark = [pytest.mark.integration, pytest.mark.torch]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _run(folder: Path, models_dir: Path, out: Path) -> tuple[list[StudyResult], FolderSink]:
    engine = build_engine(Settings(models_dir=models_dir))
    sink = FolderSink(out)
    return analyse_all(scan_folder(folder).studies, engine, sink, now=NOW), sink


def test_full_lidc_series_is_analysed_on_cpu_and_gets_an_sr(
    lidc_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    (result,), sink = _run(lidc_dir, tiny_models_dir, tmp_path)
    (outcome,) = result.outcomes
    assert outcome.task == Task.LUNG_NODULE
    assert outcome.failure is None
    assert outcome.provider == "CPUExecutionProvider"
    assert result.decision.priority in (Priority.ROUTINE, Priority.URGENT)
    sr_path, summary = sink.written[result.study_uid]
    assert sr_path is not None
    assert summary.is_file()
    sr = pydicom.dcmread(sr_path)
    assert sr.StudyInstanceUID == result.study_uid
    assert sr.Modality == "SR"
    assert "AI" in sr.SeriesDescription
    assert "unverified" in sr.SeriesDescription


def test_rerunning_a_study_gives_the_same_sr_uid(
    lidc_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    subset = tmp_path / "in"
    shutil.copytree(lidc_dir, subset)
    (first,), _ = _run(subset, tiny_models_dir, tmp_path / "a")
    (second,), _ = _run(subset, tiny_models_dir, tmp_path / "b")
    assert first.sr is not None
    assert second.sr is not None
    assert first.sr.SOPInstanceUID == second.sr.SOPInstanceUID


def test_truncated_16_slice_series_is_not_analysed_with_the_reason(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    (result,), sink = _run(shared_data / "lidc-idri-0001-subset16", tiny_models_dir, tmp_path)
    assert result.decision.priority == Priority.NOT_ANALYSED
    assert any("16 slices" in r and "40" in r for r in result.decision.reasons), (
        result.decision.reasons
    )
    assert sink.written[result.study_uid][0] is not None, "a NOT_ANALYSED study still gets an SR"


def test_abdominal_ct_is_not_analysed_because_no_series_qualifies(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    (result,), _ = _run(shared_data / "non-chest-ct-totalseg", tiny_models_dir, tmp_path)
    assert result.decision.priority == Priority.NOT_ANALYSED
    (reason,) = result.decision.reasons
    assert "no series qualifies for nodule triage" in reason
    assert "body part PARTIALBODY" in reason


def test_cr_with_zero_pixel_spacing_is_not_analysed_and_says_why(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data / "nema-wg04-cr" / "RG1_UNCR.dcm", folder)
    (result,), _ = _run(folder, tiny_models_dir, tmp_path / "out")
    assert result.decision.priority == Priority.NOT_ANALYSED
    assert any("pixel spacing" in r for r in result.decision.reasons), result.decision.reasons


def test_real_cr_tibia_is_analysed_once_it_has_a_pixel_spacing(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ds = pydicom.dcmread(shared_data / "nema-wg04-cr" / "RG3_UNCR.dcm")
    assert "PixelSpacing" not in ds  # as distributed: no spacing
    assert "ImagerPixelSpacing" not in ds
    as_is = tmp_path / "as-is"
    as_is.mkdir()
    shutil.copy(shared_data / "nema-wg04-cr" / "RG3_UNCR.dcm", as_is)
    (result,), _ = _run(as_is, tiny_models_dir, tmp_path / "as-is-out")
    assert result.decision.priority == Priority.NOT_ANALYSED
    assert any("pixel spacing" in r for r in result.decision.reasons), result.decision.reasons
    ds.ImagerPixelSpacing = [0.1, 0.1]  # what a Fuji CR plate of this size would declare
    ds.save_as(folder / "rg3.dcm")
    (result,), sink = _run(folder, tiny_models_dir, tmp_path / "out")
    (outcome,) = result.outcomes
    assert outcome.task == Task.FRACTURE
    assert outcome.failure is None
    assert sink.written[result.study_uid][0] is not None


def test_junk_and_corrupt_files_are_skipped_and_the_rest_analysed(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed" / "deeper"
    shutil.copytree(shared_data / "lidc-idri-0001-subset16", folder)
    (folder / "notes.txt").write_text("not dicom")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    scan = scan_folder(tmp_path / "mixed")
    assert {p.path.name for p in scan.skipped} >= {"notes.txt", "broken.dcm"}
    assert len(scan.studies) == 1
    assert scan.studies[0].series[0].n_instances == 16


def test_missing_model_gives_not_analysed_never_routine(lidc_dir: Path, tmp_path: Path) -> None:
    (result,), _ = _run(lidc_dir, tmp_path / "no-models", tmp_path / "out")
    assert result.decision.priority == Priority.NOT_ANALYSED
    assert any("no model for lung_nodule" in r for r in result.decision.reasons)


def _set_operating_point(card_path: Path, score: float | None) -> None:
    card = yaml.safe_load(card_path.read_text())
    card["metrics"] = (
        {}
        if score is None
        else {"synthetic_fresh_set": {"operating_point_1fp": {"score_threshold": score}}}
    )
    card_path.write_text(yaml.safe_dump(card))


def test_a_card_without_an_operating_point_is_not_analysed_and_names_the_setting(
    lidc_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    _set_operating_point(models / "lung_nodule_tiny" / "model.yaml", None)
    (result,), _ = _run(lidc_dir, models, tmp_path / "out")  # default policy: operating_point
    assert result.decision.priority == Priority.NOT_ANALYSED
    (reason,) = [r for r in result.decision.reasons if "operating" in r]
    assert "lung_nodule.min_score" in reason
    assert "set min_score to a number" in reason


def test_the_default_policy_reports_from_the_cards_operating_point(
    lidc_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    card = models / "lung_nodule_tiny" / "model.yaml"
    _set_operating_point(card, 0.0)  # the random model scores low: report every candidate
    (low,), _ = _run(lidc_dir, models, tmp_path / "low")
    scores = sorted((f.score for f in low.findings), reverse=True)
    assert len(set(scores)) >= 2, scores  # the random model must give something to cut
    cut = scores[len(scores) // 2]
    _set_operating_point(card, cut)
    (high,), _ = _run(lidc_dir, models, tmp_path / "high")
    assert sorted((f.score for f in high.findings), reverse=True) == [s for s in scores if s >= cut]
    assert len(high.findings) < len(low.findings)


def test_weights_with_a_wrong_checksum_are_refused(
    lidc_dir: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    onnx = models / "lung_nodule_tiny" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    (result,), _ = _run(lidc_dir, models, tmp_path / "out")
    assert result.decision.priority == Priority.NOT_ANALYSED
    assert any("sha256" in r and "refusing" in r for r in result.decision.reasons), (
        result.decision.reasons
    )


def test_a_new_model_version_replaces_the_earlier_sr_in_the_output_folder(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    study = shared_data / "lidc-idri-0001-subset16"
    out = tmp_path / "out"
    (first,), sink = _run(study, tiny_models_dir, out)
    old_sr, _ = sink.written[first.study_uid]
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    card = models / "lung_nodule_tiny" / "model.yaml"
    card.write_text(card.read_text().replace("version: 0.0.1-test", "version: 0.0.2-test"))
    (second,), sink = _run(study, models, out)
    new_sr, _ = sink.written[second.study_uid]
    assert old_sr is not None
    assert new_sr is not None
    assert old_sr != new_sr, "a new model version must give a new SR UID"
    assert sorted(p.name for p in new_sr.parent.glob("*.dcm")) == [new_sr.name]
