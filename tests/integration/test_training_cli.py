"""``triage export`` and ``triage evaluate`` on tiny networks, in-process through typer's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from tests.model_factories import TINY_3D, write_tiny_model
from triage.cli import app
from triage.inference.card import load_card, sha256_file
from triage.inference.networks import build_network
from triage.inference.spec import DetectionSpec

pytestmark = [pytest.mark.integration, pytest.mark.torch]

TINY_CONFIG = """\
task: lung_nodule
model_name: tiny_export
network:
  block: basic
  layers: [1, 1, 1, 1]
  block_inplanes: [8, 16, 32, 64]
  fpn_channels: 16
crop_size: [32, 32, 16]
"""


def _export(tmp_path: Path, version: str, *extra: str) -> Result:
    return CliRunner().invoke(
        app,
        [
            "export",
            str(tmp_path / "checkpoint.pt"),
            "--config",
            str(tmp_path / "tiny.yaml"),
            "--model-dir",
            str(tmp_path / "model"),
            "--version",
            version,
            *extra,
        ],
    )


def test_export_writes_a_card_matching_the_onnx_and_extends_the_changelog(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    torch.manual_seed(0)
    network = build_network(TINY_3D, DetectionSpec())
    torch.save({"network": network.state_dict(), "step": 4}, tmp_path / "checkpoint.pt")
    model = tmp_path / "model"

    first = _export(tmp_path, "0.1.0")
    assert first.exit_code == 0, first.output
    card = load_card(model)
    assert card.name == "tiny_export"
    assert card.network == TINY_3D
    assert card.weights.sha256 == sha256_file(model / "model.onnx")
    card.verify_weights(model)
    assert "NOT FOR DIAGNOSTIC USE" in card.intended_use
    assert [(e.version, e.change) for e in card.changelog] == [
        ("0.1.0", "exported with triage export")
    ]

    second = _export(tmp_path, "0.2.0", "--change", "longer training")
    assert second.exit_code == 0, second.output
    card = load_card(model)
    assert card.version == "0.2.0"
    assert card.weights.sha256 == sha256_file(model / "model.onnx")
    assert [(e.version, e.change) for e in card.changelog] == [
        ("0.1.0", "exported with triage export"),
        ("0.2.0", "longer training"),
    ]


def test_export_of_a_missing_checkpoint_is_a_system_error(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    result = _export(tmp_path, "0.1.0")
    assert result.exit_code == 1
    assert "export failed" in result.output
    assert not (tmp_path / "model" / "model.yaml").exists()


def test_evaluate_help_lists_its_options() -> None:
    result = CliRunner().invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--task", "--scans", "--no-lidc", "--out", "--png"):
        assert option in result.output


def test_evaluate_writes_a_report_and_a_froc_png_for_one_scan(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "frac", task="fracture", seed=1)
    out = tmp_path / "reports" / "frac.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "frac"),
            "--task",
            "fracture",
            "--scans",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["model"]["name"] == "tiny-fracture"
    assert report["synthetic_fresh_set"]["n_scans"] == 1
    assert set(report["synthetic_fresh_set"]["sensitivity_at_fp_per_scan"]) == {
        "0.125",
        "0.25",
        "0.5",
        "1",
        "2",
        "4",
        "8",
    }
    assert "lidc_idri_0001" not in report  # fracture models are not run on the CT
    # subgroups at the 1-FP operating point: evaluation radiograph 1000000 is a limb with one
    # displaced fracture
    groups = report["synthetic_fresh_set"]["operating_point_1fp"]["sensitivity_by_subgroup"]
    assert {k: v["n"] for k, v in groups.items()} == {
        "all": 1,
        "image=limb": 1,
        "kind=displaced": 1,
    }
    with Image.open(out.with_suffix(".png")) as png:
        assert (png.format, png.size) == ("PNG", (720, 520))


def test_evaluate_refuses_a_task_the_card_does_not_have(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "frac", task="fracture", seed=1)
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "frac"), "--task", "nodule"])
    assert result.exit_code == 2
    assert "must match the card's task (fracture), got nodule" in result.output


def test_export_carries_the_configs_flip_passes_into_the_card(tmp_path: Path) -> None:
    """Serving must run the passes its operating point was measured with: they live in the card."""
    (tmp_path / "tiny.yaml").write_text(
        TINY_CONFIG + "detection:\n  tta_flip_axes: [[0], [1, 2]]\n"
    )
    torch.manual_seed(0)
    network = build_network(TINY_3D, DetectionSpec())
    torch.save({"network": network.state_dict(), "step": 4}, tmp_path / "checkpoint.pt")
    result = _export(tmp_path, "0.1.0")
    assert result.exit_code == 0, result.output
    assert load_card(tmp_path / "model").detection.tta_flip_axes == ((0,), (1, 2))


def test_evaluate_runs_a_development_range_from_first_seed(tmp_path: Path) -> None:
    """Phases are compared on development seeds, not on the evaluation set the cards report."""
    write_tiny_model(tmp_path / "frac", task="fracture", seed=1)
    out = tmp_path / "dev.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(tmp_path / "frac"), "--task", "fracture", "--scans", "2"]
        + ["--first-seed", "900000", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["seeds"] == [900000, 900002]
    assert [s["seed"] for s in report["per_scan"]] == [900000, 900001]
    # 900000 is a chest radiograph (3 divides it): the subgroups say so
    groups = report["synthetic_fresh_set"]["operating_point_1fp"]["sensitivity_by_subgroup"]
    assert "image=chest" in groups


def test_evaluate_refuses_seeds_the_card_says_the_model_was_trained_on(tmp_path: Path) -> None:
    import yaml  # noqa: PLC0415

    write_tiny_model(tmp_path / "frac", task="fracture", seed=1)
    card_path = tmp_path / "frac" / "model.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["training_data"] = {"train_seeds": [0, 800], "extra_seeds": [[3000, 5700, 3]]}
    card_path.write_text(yaml.safe_dump(card))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(tmp_path / "frac"), "--task", "fracture", "--scans", "5"]
        + ["--first-seed", "2999", "--out", str(out)],
    )
    assert result.exit_code == 2
    assert "includes 2 seeds the card says tiny-fracture was trained on (first 3000)" in (
        " ".join(result.output.split())
    )
    assert not out.exists()
