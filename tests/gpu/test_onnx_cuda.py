"""GPU path: ONNX Runtime's CUDA provider gives the CPU path's detections; skips without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from triage.inference.card import load_card
from triage.inference.detector import detect
from triage.inference.runtime import RuntimeOptions, head_function, make_runtime

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="needs onnxruntime-gpu and a CUDA GPU (GPU test)",
    ),
]


def test_cuda_runtime_matches_cpu_runtime_on_the_same_input(tiny_models_dir: Path) -> None:
    folder = tiny_models_dir / "lung_nodule_tiny"
    card = load_card(folder)
    cpu = make_runtime("onnx", card, folder, RuntimeOptions(device="cpu"))
    gpu = make_runtime("onnx", card, folder, RuntimeOptions(device="cuda"))
    assert gpu.provider == "CUDAExecutionProvider"
    image = np.random.default_rng(0).random((96, 96, 48), dtype=np.float32)
    a = detect(image, head_function(cpu, card), card.detection)
    b = detect(image, head_function(gpu, card), card.detection)
    np.testing.assert_allclose(a.scores[:20], b.scores[:20], atol=1e-3)
    np.testing.assert_allclose(a.boxes[:20], b.boxes[:20], atol=1e-2)
