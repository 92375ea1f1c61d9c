"""Export a trained checkpoint to ONNX, check parity torch vs ONNX Runtime, write the model card."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import yaml
from monai.apps.detection.networks.retinanet_network import RetinaNet

from training.detection.config import TrainConfig
from triage.inference.card import ChangelogEntry, IOContract, ModelCard, WeightsRef, sha256_file
from triage.inference.networks import HeadOutputs, build_network, export_onnx, output_names
from triage.inference.triton_config import render_config_pbtxt

MAX_ONNX_BYTES = 25 * 1024 * 1024


def load_checkpoint_network(cfg: TrainConfig, checkpoint: Path) -> RetinaNet:
    """Build the config's network and load a checkpoint (``weights_only=True``)."""
    network = build_network(cfg.network, cfg.detection)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("network", state))
    return network.eval()


def parity(network: RetinaNet, onnx_path: Path, inputs: list[np.ndarray]) -> float:
    """Return the max abs difference of each head output, torch vs ONNX Runtime, over the inputs."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wrapper = HeadOutputs(network).eval()
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = [o.numpy() for o in wrapper(torch.from_numpy(x))]
        got = session.run(None, {"image": x})
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True)))
    return worst


def export_model(
    cfg: TrainConfig,
    checkpoint: Path,
    model_dir: Path,
    *,
    version: str,
    change: str,
    intended_use: str,
    training_data: dict[str, object],
    citations: tuple[str, ...] = (),
    real_inputs: list[np.ndarray] | None = None,
    tolerance: float = 1e-3,
) -> ModelCard:
    """Write ``model.onnx`` + ``model.yaml`` into ``model_dir`` and return the card.

    Raises:
        ValueError: parity worse than ``tolerance`` or an ONNX file over 25 MB.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    network = load_checkpoint_network(cfg, checkpoint)
    onnx_path = model_dir / "model.onnx"
    export_onnx(network, cfg.network, str(onnx_path), example_shape=cfg.crop_size)
    if onnx_path.stat().st_size > MAX_ONNX_BYTES:
        raise ValueError(
            f"ONNX file must be <= 25 MB, got {onnx_path.stat().st_size / 2**20:.1f} MB"
        )
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 1, *cfg.crop_size), dtype=np.float32)] + list(real_inputs or [])
    max_diff = parity(network, onnx_path, inputs)
    if max_diff > tolerance:
        raise ValueError(
            f"torch vs ONNX parity must be <= {tolerance}, got max abs diff {max_diff:.2e}"
        )
    old = _previous_changelog(model_dir)
    card = ModelCard(
        name=cfg.model_name,
        version=version,
        task=cfg.task,
        intended_use=intended_use,
        network=cfg.network,
        detection=cfg.detection,
        preprocess=cfg.preprocess,
        io=IOContract(output_names=tuple(output_names(len(cfg.network.returned_layers) + 1))),
        weights=WeightsRef(
            file="model.onnx",
            sha256=sha256_file(onnx_path),
            format="onnx",
            source=f"triage export of {checkpoint.name}; parity max abs diff {max_diff:.1e}",
        ),
        training_data=training_data,
        citations=citations,
        changelog=(
            *old,
            ChangelogEntry(version=version, date=dt.date.today().isoformat(), change=change),
        ),
    )
    write_card(card, model_dir)
    write_triton_config(card, model_dir)
    return card


def write_card(card: ModelCard, model_dir: Path) -> None:
    """Write ``model.yaml`` (plain YAML, keys in schema order)."""
    data = card.model_dump(mode="json")
    (model_dir / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False, width=110))


def write_triton_config(card: ModelCard, model_dir: Path) -> Path:
    """Write ``triton/config.pbtxt`` rendered from the card (the card stays the one source, H18)."""
    path = model_dir / "triton" / "config.pbtxt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(render_config_pbtxt(card))
    return path


def _previous_changelog(model_dir: Path) -> tuple[ChangelogEntry, ...]:
    path = model_dir / "model.yaml"
    if not path.exists():
        return ()
    data = yaml.safe_load(path.read_text()) or {}
    return tuple(ChangelogEntry.model_validate(e) for e in data.get("changelog", []))
