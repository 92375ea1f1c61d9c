"""The CLI as a user runs it: a subprocess, real sample data, tiny models, JSON on stdout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.torch]


def _triage(*args: str, env_models: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "triage.cli", *args]
    if env_models is not None:
        cmd += ["--models-dir", str(env_models)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def test_run_prints_json_and_writes_an_sr_per_study_for_a_mixed_folder(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(shared_data / "lidc-idri-0001-subset16", inbox / "a" / "ct")
    shutil.copytree(shared_data / "non-chest-ct-totalseg", inbox / "b")
    (inbox / "README.txt").write_text("not a DICOM file")
    out = tmp_path / "out"
    proc = _triage("run", str(inbox), "--out", str(out), "--json", env_models=tiny_models_dir)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in payload["skipped_files"]}
    assert "not a DICOM file" in skipped["README.txt"]
    assert set(skipped) == {
        "README.txt",
        "SOURCE.txt",
    }  # the sample folders carry a SOURCE.txt each
    studies = payload["studies"]
    assert len(studies) == 2
    assert {s["priority"] for s in studies} == {"not_analysed"}
    reasons = " ".join(r for s in studies for r in s["reasons"])
    assert "fewer than 40" in reasons
    assert "body part PARTIALBODY" in reasons
    for s in studies:
        sr = pydicom.dcmread(s["sr_path"])
        assert sr.StudyInstanceUID == s["study_uid"] or s["study_uid"].startswith("2.25.")
        assert s["ai_generated"] is True
        assert s["verified_by_radiologist"] is False


def test_run_on_a_missing_path_is_a_system_error_not_a_crash(tmp_path: Path) -> None:
    proc = _triage("run", str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert "PATH must exist" in proc.stderr


def test_unknown_runtime_is_a_usage_error(shared_data: Path, tmp_path: Path) -> None:
    proc = _triage("run", str(shared_data / "lidc-idri-0001-subset16"), "--runtime", "tensorflow")
    assert proc.returncode != 0
    assert "runtime" in (proc.stderr + proc.stdout).lower()


def test_models_verify_flags_a_tampered_weight_file(tiny_models_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    assert _triage("models", "verify", env_models=models).returncode == 0
    weights = models / "fracture_tiny" / "model.onnx"
    weights.write_bytes(weights.read_bytes()[:-10])
    proc = _triage("models", "verify", env_models=models)
    assert proc.returncode == 1
    assert "sha256" in proc.stdout


def test_synthetic_radiographs_go_through_synth_and_run(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    made = _triage("synth", "dr", str(tmp_path / "dr"), "--count", "2", "--seed", "7")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "dr" / "dr_datalist.json").is_file()
    proc = _triage(
        "run",
        str(tmp_path / "dr"),
        "--out",
        str(tmp_path / "out"),
        "--json",
        env_models=tiny_models_dir,
    )
    assert proc.returncode == 0, proc.stderr
    studies = json.loads(proc.stdout)["studies"]
    assert len(studies) == 2
    for study in studies:
        (task,) = study["tasks"]
        assert task["task"] == "fracture"
        assert task["status"] == "analysed", task
        assert task["provider"] == "CPUExecutionProvider"
