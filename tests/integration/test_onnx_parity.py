"""The served path (ONNX Runtime + numpy) against MONAI's RetinaNetDetector, same weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.model_factories import write_tiny_model
from triage.inference.card import WeightsRef, load_card, sha256_file
from triage.inference.detector import detect
from triage.inference.networks import build_detector, build_network
from triage.inference.runtime import RuntimeOptions, head_function, make_runtime
from triage.inference.spec import DetectionSpec, NetworkSpec

pytestmark = [pytest.mark.integration, pytest.mark.torch]


@pytest.mark.parametrize(
    ("task", "shape"), [("lung_nodule", (56, 48, 40)), ("fracture", (200, 176))]
)
def test_onnx_path_gives_monai_detector_boxes_and_scores(
    task: str, shape: tuple[int, ...], tmp_path: Path
) -> None:
    folder = tmp_path / task
    # biased so many boxes pass the threshold; logits spread so no scores nearly tie in NMS order
    write_tiny_model(folder, task=task, seed=5, bias=0.0, logit_scale=4.0)
    card = load_card(folder)
    network = build_network(card.network, card.detection)
    network.load_state_dict(torch.load(folder / "state.pt", weights_only=True)["network"])
    reference = build_detector(card.network, card.detection, network.eval()).eval()
    x = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = reference(x, use_inferer=False)[0]
    runtime = make_runtime("onnx", card, folder, RuntimeOptions())
    ours = detect(x[0, 0].numpy(), head_function(runtime, card), card.detection, use_inferer=False)
    ref_boxes = ref[reference.target_box_key].numpy()
    ref_scores = ref[reference.pred_score_key].numpy()
    assert len(ref_boxes) >= 20
    assert ours.boxes.shape == ref_boxes.shape
    _assert_same_detections(ours.boxes, ours.scores, ref_boxes, ref_scores)


def _assert_same_detections(
    boxes: np.ndarray, scores: np.ndarray, ref_boxes: np.ndarray, ref_scores: np.ndarray
) -> None:
    """One-to-one: every box has a reference box within 1e-3 and a score within 1e-4.

    ONNX Runtime and torch differ by ~1e-6 in the logits, which may swap the order of two boxes
    whose scores tie to that precision; the detections themselves must be the same.
    """
    free = np.ones(len(ref_boxes), dtype=bool)
    for box, score in zip(boxes, scores, strict=True):
        close = (
            free
            & np.all(np.abs(ref_boxes - box) <= 1e-3, axis=1)
            & (np.abs(ref_scores - score) <= 1e-4)
        )
        assert close.any(), f"no reference detection matches box {box} score {score}"
        free[np.argmax(close)] = False
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_allclose(scores[order], np.sort(ref_scores)[::-1], atol=1e-4)


def test_bundle_shaped_state_dict_loads_with_weights_only_into_the_torch_runtime(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "bundle_like"
    folder.mkdir()
    spec, det = NetworkSpec(), DetectionSpec()
    torch.save(build_network(spec, det).state_dict(), folder / "model.pt")  # as the bundle ships it
    card_src = write_tiny_model(tmp_path / "template", task="lung_nodule")
    card = card_src.model_copy(
        update={
            "network": spec,
            "detection": det,
            "weights": WeightsRef(
                file="model.pt",
                sha256=sha256_file(folder / "model.pt"),
                format="torch_state_dict",
                source="bundle-shaped random weights",
            ),
        }
    )
    runtime = make_runtime("torch", card, folder, RuntimeOptions())
    out = runtime.infer({"image": np.zeros((1, 1, 64, 64, 32), dtype=np.float32)})
    assert [tuple(out[f"cls_{i}"].shape) for i in range(3)] == [
        (1, 3, 16, 16, 16),
        (1, 3, 8, 8, 8),
        (1, 3, 4, 4, 4),
    ]


def test_serving_path_never_imports_torch(
    shared_data: Path, tiny_models_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['monai'] = None\n"
        "from triage.cli import app\n"
        f"app(['run', {str(shared_data / 'lidc-idri-0001-subset16')!r}, "
        f"'--out', {str(tmp_path)!r}, '--json', '--models-dir', {str(tiny_models_dir)!r}])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"priority"' in proc.stdout
