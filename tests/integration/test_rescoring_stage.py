"""The rescoring stage end to end: train a patch classifier, export it, ship it into a model, serve.

The classifier is trained for a few steps on patches with a known answer (a bright blob is a
"nodule", noise is not), so the tests can check that what the engine serves is that classifier.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from training.detection import rescoring_train
from training.detection.evaluate import _runner
from training.detection.export import write_card
from training.detection.ship import add_rescoring
from triage.adapters.folder import FolderSink
from triage.cli import app, build_engine
from triage.config import Settings
from triage.dicom.reader import scan_folder
from triage.dicom.selection import Task
from triage.inference.card import load_card
from triage.inference.rescoring import combine_scores, extract_patches
from triage.pipeline import analyse_all

pytestmark = [pytest.mark.integration, pytest.mark.torch]
PATCH = (8, 8, 4)
STORED = (12, 12, 8)


def _candidates(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Half blobs (positive, on a reference), half noise (negative, far from any reference)."""
    patches = rng.random((n, *STORED), dtype=np.float32) * 0.2
    patches[: n // 2, 4:8, 4:8, 2:6] += 0.8
    return {
        "patch": patches.astype(np.float16),
        "score": np.full(n, 0.5, np.float32),
        "seed": np.arange(n),
        "dist_r": np.where(np.arange(n) < n // 2, 0.2, 5.0).astype(np.float32),
        "gt_idx": np.zeros(n, np.int64),
        "is_gt": np.zeros(n, np.int64),
    }


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rescoring")
    torch.set_num_threads(1)
    net = rescoring_train.train(
        _candidates(64, np.random.default_rng(0)), PATCH, steps=40, batch_size=16, log_every=1000
    )
    rescoring_train.export(net, out, PATCH, weight=0.5, source="test")
    return out


@pytest.fixture
def rescored_models(tiny_models_dir: Path, classifier_dir: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    folder = models / "lung_nodule_tiny"
    write_card(add_rescoring(load_card(folder), classifier_dir, folder), folder)
    return models


def test_exported_classifier_tells_blobs_from_noise_and_records_its_parity(
    classifier_dir: Path,
) -> None:
    block = (classifier_dir / rescoring_train.BLOCK_FILE).read_text()
    assert "parity max abs diff" in block
    session = ort.InferenceSession(str(classifier_dir / rescoring_train.ONNX_FILE))
    held_out = _candidates(20, np.random.default_rng(1))["patch"][:, 2:10, 2:10, 2:6]
    (logits,) = session.run(None, {"patch": held_out[:, None].astype(np.float32)})
    assert logits[:10].min() > logits[10:].max()


def test_served_detections_are_rescored_by_the_shipped_classifier(rescored_models: Path) -> None:
    folder = rescored_models / "lung_nodule_tiny"
    served = _runner(folder)
    assert served.rescorer is not None
    rng = np.random.default_rng(2)
    image = rng.random((64, 64, 32), dtype=np.float32) * 0.3
    image[20:26, 20:26, 10:14] = 1.0
    dets = served.detect(image)
    assert len(dets.scores) > 1, "the tiny detector must propose candidates for this test"
    rescored = served.rescore(image, dets)
    centres = (dets.boxes[:, :3] + dets.boxes[:, 3:]) / 2
    session = ort.InferenceSession(str(folder / rescoring_train.ONNX_FILE))
    (logits,) = session.run(None, {"patch": extract_patches(image, centres, PATCH)})
    expected = combine_scores(dets.scores, 1 / (1 + np.exp(-logits[:, 0])), 0.5)
    np.testing.assert_allclose(np.sort(rescored.scores), np.sort(expected), rtol=1e-5)
    assert not np.allclose(np.sort(rescored.scores), np.sort(dets.scores))


def test_engine_loads_the_stage_and_refuses_a_tampered_classifier(rescored_models: Path) -> None:
    engine = build_engine(Settings(models_dir=rescored_models))
    assert engine.models[Task.LUNG_NODULE].rescorer is not None
    card = load_card(rescored_models / "lung_nodule_tiny")
    assert card.rescoring is not None
    assert engine.models[Task.LUNG_NODULE].algorithm.rescoring_sha256 == card.rescoring.sha256
    with (rescored_models / "lung_nodule_tiny" / rescoring_train.ONNX_FILE).open("ab") as f:
        f.write(b"\0")
    engine = build_engine(Settings(models_dir=rescored_models))
    assert Task.LUNG_NODULE not in engine.models
    assert "rescoring classifier must have sha256" in engine.unavailable[Task.LUNG_NODULE]


def test_models_verify_names_the_rescoring_stage(
    rescored_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["models", "verify", "--models-dir", str(rescored_models)])
    assert result.exit_code == 0, result.output
    assert "rescoring" in result.output


class _Rejects(torch.nn.Module):
    """A classifier that calls every patch background (logit -30), to see the engine obey it."""

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return patch.flatten(1).mean(dim=1, keepdim=True) * 0.0 - 30.0


def _study(task: str, lidc_dir: Path, tmp_path: Path) -> Path:
    if task == "lung_nodule":
        return lidc_dir
    from tests.factories import make_radiograph  # noqa: PLC0415

    make_radiograph(tmp_path / "dx" / "1.dcm", rows=256, cols=256, pixel_spacing_mm=(1.0, 1.0))
    return tmp_path / "dx"


@pytest.mark.parametrize(("task", "patch"), [("lung_nodule", PATCH), ("fracture", (8, 8))])
def test_pipeline_reports_what_the_rescoring_stage_leaves(
    task: str, patch: tuple[int, ...], lidc_dir: Path, tmp_path: Path
) -> None:
    from tests.model_factories import write_tiny_model  # noqa: PLC0415 - torch-only helper

    plain, staged = tmp_path / "plain", tmp_path / "staged"
    write_tiny_model(plain / "tiny", task=task, seed=0, bias=6.0)
    shutil.copytree(plain, staged)
    rejects = tmp_path / "rejects"
    rescoring_train.export(_Rejects(), rejects, patch, weight=1.0, source="test: rejects all")  # type: ignore[arg-type]
    folder = staged / "tiny"
    write_card(add_rescoring(load_card(folder), rejects, folder), folder)
    studies = scan_folder(_study(task, lidc_dir, tmp_path)).studies
    found = {}
    for name, models in (("plain", plain), ("staged", staged)):
        (result,) = analyse_all(
            studies,
            build_engine(Settings(models_dir=models)),
            FolderSink(tmp_path / name),
            now=datetime(2026, 1, 2, tzinfo=UTC),
        )
        (outcome,) = result.outcomes
        assert outcome.failure is None
        found[name] = outcome.findings
    assert found["plain"], "the confident tiny detector must report findings without the stage"
    assert not found["staged"], "every finding must be rejected by the stage"


def test_mining_labels_candidates_by_the_evaluation_hit_rule(tiny_models_dir: Path) -> None:
    from training.detection.rescoring_data import CandidateSet, fracture_candidates  # noqa: PLC0415
    from triage.synth.dr_phantom import generate_radiograph  # noqa: PLC0415

    served = _runner(tiny_models_dir / "fracture_tiny")
    seed = 2  # a limb radiograph (seed % 3 != 0) with a fracture
    n_ref = len(generate_radiograph(seed, kind="limb").fractures)
    assert n_ref > 0, "the phantom generator changed: pick a seed whose radiograph has a fracture"
    found = CandidateSet()
    n = fracture_candidates(seed, served, (16, 16), found)
    assert len(found.patch) == n + n_ref
    assert found.is_gt[n:] == [1] * n_ref
    assert all(p.shape == (16, 16) for p in found.patch)
    assert all(d >= 0.0 for d in found.dist_r)
    with pytest.raises(ValueError, match="training seed"):
        fracture_candidates(1_000_003, served, (16, 16), CandidateSet())
