"""Tiny random-weight detectors exported to ONNX with valid cards: CI needs no trained weights."""

from __future__ import annotations

from pathlib import Path

import torch

from training.detection.config import OptimizerConfig, TrainConfig
from training.detection.export import write_card
from triage.inference.card import IOContract, ModelCard, WeightsRef, sha256_file
from triage.inference.networks import build_network, export_onnx, output_names
from triage.inference.spec import DetectionSpec, IntensitySpec, NetworkSpec, PreprocessSpec

TINY_3D = NetworkSpec(
    block="basic", layers=(1, 1, 1, 1), block_inplanes=(8, 16, 32, 64), fpn_channels=16
)
TINY_2D = NetworkSpec(
    spatial_dims=2,
    block="basic",
    layers=(1, 1, 1, 1),
    block_inplanes=(8, 16, 32, 64),
    fpn_channels=16,
    conv1_t_size=(7, 7),
    conv1_t_stride=(2, 2),
)
DET_3D = DetectionSpec(roi_size=(128, 128, 64), score_thresh=0.02)
DET_2D = DetectionSpec(
    base_anchor_shapes=((12, 12), (16, 8), (8, 16)),
    size_divisible=(16, 16),
    box_coder_weights=(1.0, 1.0, 1.0, 1.0),
    roi_size=(512, 512),
    score_thresh=0.02,
)


def tiny_fracture_config(*, pos_fraction: float, **extra: object) -> TrainConfig:
    """Return a two-step 2-D experiment on the tiny network, for the training-loop tests."""
    return TrainConfig(
        task="fracture",
        network=TINY_2D,
        detection=DET_2D,
        crop_size=(64, 64),
        batch_size=8,
        pos_fraction=pos_fraction,
        threads=1,
        data_workers=1,
        max_steps=2,
        checkpoint_every=2,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1),
        **extra,  # type: ignore[arg-type]
    )


def perturbed_network(
    spec: NetworkSpec, det: DetectionSpec, *, seed: int, bias: float = 0.0, logit_scale: float = 1.0
) -> torch.nn.Module:
    """Return a random network whose classification bias is raised so it proposes boxes."""
    torch.manual_seed(seed)
    net = build_network(spec, det)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        net.classification_head.cls_logits.bias.add_(bias)
        net.classification_head.cls_logits.weight.mul_(logit_scale)  # spread scores: no near-ties
    return net.eval()


def write_tiny_model(
    folder: Path, *, task: str, seed: int = 0, bias: float = 0.0, logit_scale: float = 1.0
) -> ModelCard:
    """Export a tiny network for ``task`` ("lung_nodule" or "fracture") and card to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if task == "lung_nodule":
        spec, det = TINY_3D, DET_3D
        prep = PreprocessSpec(target_spacing_mm=(2.0, 2.0, 4.0))
        example = (64, 64, 32)
    else:
        spec, det = TINY_2D, DET_2D
        prep = PreprocessSpec(
            target_spacing_mm=(1.0, 1.0),
            axcodes="RA",
            intensity=IntensitySpec(mode="percentile", low=1.0, high=99.0),
        )
        example = (128, 128)
    net = perturbed_network(spec, det, seed=seed, bias=bias, logit_scale=logit_scale)
    path = folder / "model.onnx"
    export_onnx(net, spec, str(path), example_shape=example)
    card = ModelCard(
        name=f"tiny-{task}",
        version="0.0.1-test",
        task=task,  # type: ignore[arg-type]
        intended_use="tests only; random weights; not for diagnostic use",
        network=spec,
        detection=det,
        preprocess=prep,
        io=IOContract(output_names=tuple(output_names(3))),
        weights=WeightsRef(
            file="model.onnx", sha256=sha256_file(path), source="tests/model_factories.py"
        ),
        # A declared operating point, so the default policy (min_score: operating_point) applies.
        metrics={"synthetic_fresh_set": {"operating_point_1fp": {"score_threshold": 0.5}}},
    )
    write_card(card, folder)
    torch.save({"network": net.state_dict()}, folder / "state.pt")
    return card
