"""Triton config.pbtxt and model repositories rendered from model cards."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import yaml

from triage.config import REPO_ROOT
from triage.core.errors import ModelUnavailable
from triage.inference.card import ModelCard, WeightsRef, load_card, sha256_file
from triage.inference.spec import DetectionSpec, NetworkSpec, PreprocessSpec
from triage.inference.triton_config import (
    PYTHON_BACKEND_MODEL,
    render_config_pbtxt,
    tensor_dims,
    write_model_repository,
)

MODELS = REPO_ROOT / "models"
SHIPPED = sorted(p.parent.name for p in MODELS.glob("*/model.yaml"))


def _card(**update: object) -> ModelCard:
    card = ModelCard(
        name="demo",
        version="1.2.0",
        task="lung_nodule",
        intended_use="tests",
        network=NetworkSpec(),
        detection=DetectionSpec(),
        preprocess=PreprocessSpec(),
        weights=WeightsRef(file="model.onnx", sha256="0" * 64),
    )
    return card.model_copy(update=update)


def _write_folder(folder: Path, card: ModelCard, weights: bytes = b"not really onnx") -> ModelCard:
    folder.mkdir(parents=True)
    (folder / card.weights.file).write_bytes(weights)
    card = card.model_copy(
        update={
            "weights": card.weights.model_copy(
                update={"sha256": sha256_file(folder / card.weights.file)}
            )
        }
    )
    (folder / "model.yaml").write_text(
        yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False)
    )
    return card


def test_both_shipped_models_have_a_triton_config() -> None:
    assert {"lung_nodule_det", "fracture_det"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_committed_triton_config_matches_the_card(name: str) -> None:
    card = load_card(MODELS / name)
    committed = MODELS / name / "triton" / "config.pbtxt"
    assert committed.is_file(), f"missing {committed}; write it with render_config_pbtxt(card)"
    assert committed.read_text() == render_config_pbtxt(card), (
        f"{committed} is stale: the card changed; regenerate it with "
        "triage.inference.triton_config.render_config_pbtxt(load_card(folder))"
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_card_dims_are_the_dims_of_the_shipped_onnx_graph(name: str) -> None:
    card = load_card(MODELS / name)
    session = ort.InferenceSession(
        str(card.verify_weights(MODELS / name)), providers=["CPUExecutionProvider"]
    )
    graph = {
        t.name: tuple(d if isinstance(d, int) else -1 for d in t.shape)
        for t in [*session.get_inputs(), *session.get_outputs()]
    }
    assert tensor_dims(card) == graph


def test_config_names_the_card_version_and_weights_checksum() -> None:
    text = render_config_pbtxt(_card(version='2.0.0"x'))
    assert 'name: "demo"' in text
    assert 'string_value: "2.0.0\\"x"' in text
    assert f'string_value: "{"0" * 64}"' in text
    assert "kind: KIND_CPU" in text


def test_python_backend_and_gpu_instances_render() -> None:
    text = render_config_pbtxt(
        _card(), backend="python", instance_kind="KIND_GPU", instance_count=2
    )
    assert 'backend: "python"' in text
    assert "platform" not in text
    assert "count: 2\n    kind: KIND_GPU" in text


def test_two_dimensional_card_has_four_dims_per_tensor() -> None:
    card = load_card(MODELS / "fracture_det")
    assert set(tensor_dims(card).values()) == {(-1, 1, -1, -1), (-1, 3, -1, -1), (-1, 12, -1, -1)}


def test_a_name_triton_cannot_use_is_refused() -> None:
    with pytest.raises(ValueError, match=r"model name must be a Triton model name.*'my model'"):
        render_config_pbtxt(_card(name="my model"))


def test_repository_has_config_and_versioned_weights_per_model(tmp_path: Path) -> None:
    written = write_model_repository(MODELS, tmp_path / "repo")
    names = [load_card(MODELS / n).name for n in SHIPPED]
    assert sorted(p.name for p in written) == sorted(names)
    for name in SHIPPED:
        card = load_card(MODELS / name)
        target = tmp_path / "repo" / card.name
        assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
            "1/model.onnx",
            "config.pbtxt",
        ]
        assert sha256_file(target / "1" / "model.onnx") == card.weights.sha256
        assert (target / "config.pbtxt").read_text() == (
            MODELS / name / "triton" / "config.pbtxt"
        ).read_text()


def test_python_backend_repository_carries_its_model_script(tmp_path: Path) -> None:
    card = _write_folder(tmp_path / "models" / "demo", _card())
    (target,) = write_model_repository(tmp_path / "models", tmp_path / "repo", backend="python")
    assert (target / "1" / "model.py").read_text() == PYTHON_BACKEND_MODEL
    assert (target / "config.pbtxt").read_text() == render_config_pbtxt(card, backend="python")
    compile(PYTHON_BACKEND_MODEL, "model.py", "exec")


def test_repository_refuses_weights_that_fail_the_checksum(tmp_path: Path) -> None:
    _write_folder(tmp_path / "models" / "demo", _card())
    (tmp_path / "models" / "demo" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelUnavailable, match="refusing to load unverified weights"):
        write_model_repository(tmp_path / "models", tmp_path / "repo")
    assert not (tmp_path / "repo" / "demo" / "1" / "model.onnx").exists()


def test_repository_refuses_torch_weights(tmp_path: Path) -> None:
    card = _card(weights=WeightsRef(file="model.pt", sha256="0" * 64, format="torch_state_dict"))
    _write_folder(tmp_path / "models" / "demo", card)
    with pytest.raises(
        ValueError, match="Triton serving needs ONNX weights, got format 'torch_state_dict'"
    ):
        write_model_repository(tmp_path / "models", tmp_path / "repo")


def test_repository_refuses_two_models_with_one_name(tmp_path: Path) -> None:
    _write_folder(tmp_path / "models" / "a", _card())
    _write_folder(tmp_path / "models" / "b", _card())
    with pytest.raises(ValueError, match="model names must be unique.*'demo' twice"):
        write_model_repository(tmp_path / "models", tmp_path / "repo")


def test_repository_of_an_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="models_dir must contain <name>/model.yaml folders"):
        write_model_repository(tmp_path, tmp_path / "repo")
