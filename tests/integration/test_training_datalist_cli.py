"""``triage train`` end to end on synthetic datalists with the smoke configs; AP in evaluate.

The radiograph datalist is made by ``triage synth dr`` itself; the CT datalist by the function that
``triage synth ct`` wraps (``make_demo_set``), with a voxel cap so the CT renders in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.model_factories import write_tiny_model
from triage.cli import app
from triage.inference.card import load_card
from triage.synth.studies import make_demo_set

pytestmark = [pytest.mark.integration, pytest.mark.torch, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _smoke_config(model: str, tmp_path: Path, datalist: Path) -> Path:
    """Return the committed smoke config with its data paths pointed into ``tmp_path``."""
    doc = yaml.safe_load(
        (REPO / "configs" / "training" / model / "datalist_smoke.yaml").read_text()
    )
    doc["data"]["datalist"] = str(datalist)
    doc["data"]["cache_dir"] = str(tmp_path / "cache")
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _assert_run(run: Path, *, steps: int) -> None:
    """A finished run: checkpoint at the last step, one log line per step, a TensorBoard file."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["step"] == steps
    lines = (run / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, steps + 1))
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1


def test_train_nodule_on_a_synthetic_ct_datalist(tmp_path: Path) -> None:
    demo = make_demo_set(tmp_path / "synth", seed=1, n_ct=1, n_dr=0, ct_max_voxels=1_500_000)
    assert json.loads(demo.datalist_json.read_text())["training"][0]["box"]  # has nodules
    config = _smoke_config("lung_nodule_det", tmp_path, demo.datalist_json)
    result = CliRunner().invoke(
        app, ["train", "nodule", "--config", str(config), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 0, result.output
    _assert_run(tmp_path / "run", steps=2)
    assert list((tmp_path / "cache").glob("datalist_*.npz"))  # preprocessed once, cached


def test_train_fracture_on_a_synth_dr_datalist_then_export_records_the_data(
    tmp_path: Path,
) -> None:
    synth = CliRunner().invoke(
        app, ["synth", "dr", str(tmp_path / "synth"), "--count", "2", "--seed", "4"]
    )
    assert synth.exit_code == 0, synth.output
    datalist = tmp_path / "synth" / "dr_datalist.json"
    assert all(e["box"] for e in json.loads(datalist.read_text())["training"])
    config = _smoke_config("fracture_det", tmp_path, datalist)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "fracture", "--config", str(config), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    _assert_run(run, steps=2)

    exported = CliRunner().invoke(
        app,
        ["export", str(run / "checkpoint.pt"), "--config", str(config)]
        + ["--model-dir", str(tmp_path / "model"), "--version", "0.0.1"],
    )
    assert exported.exit_code == 0, exported.output
    card = load_card(tmp_path / "model")
    assert card.training_data["source"] == "detection datalist (MONAI / LUNA16 format)"
    assert len(str(card.training_data["datalist_sha256"])) == 64
    assert "synthetic phantoms" not in card.intended_use
    assert "NOT FOR DIAGNOSTIC USE" in card.intended_use


def test_train_refuses_a_datalist_that_does_not_exist(tmp_path: Path) -> None:
    config = _smoke_config("lung_nodule_det", tmp_path, tmp_path / "missing.json")
    result = CliRunner().invoke(
        app, ["train", "nodule", "--config", str(config), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "training data could not be read" in result.output
    assert "datalist must be an existing JSON file" in result.output
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_evaluate_reports_ap_at_iou_for_a_fracture_model(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "frac", task="fracture", seed=1, bias=2.0)
    out = tmp_path / "frac.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(tmp_path / "frac"), "--task", "fracture", "--scans", "1"]
        + ["--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    fresh = json.loads(out.read_text())["synthetic_fresh_set"]
    assert set(fresh["ap_at_iou"]) == {"0.1", "0.3"}
    assert all(0.0 <= v <= 1.0 for v in fresh["ap_at_iou"].values())
    assert fresh["ap_at_iou"]["0.1"] >= fresh["ap_at_iou"]["0.3"]  # looser IoU, never lower AP
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["0.1", "0.3"]  # the printed table
    assert f"{fresh['ap_at_iou']['0.3']:.3f}" in rows[1]
