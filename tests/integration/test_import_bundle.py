"""``triage import-bundle`` on a bundle-shaped folder: checked, exported, carded, served like MONAI.

The folder is laid out as users download MONAI's ``lung_nodule_ct_detection`` (configs/*.json,
models/model.pt) with random weights of the bundle's exact ResNet-50 RetinaNet; inputs are kept
tiny because that network is large.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.integration.test_onnx_parity import _assert_same_detections
from tests.model_factories import perturbed_network
from training.detection.bundle import import_bundle, load_state_dict
from triage.inference.card import load_card, sha256_file
from triage.inference.detector import detect
from triage.inference.networks import build_detector, build_network
from triage.inference.runtime import RuntimeOptions, head_function, make_runtime
from triage.inference.spec import DetectionSpec, NetworkSpec

pytestmark = [pytest.mark.integration, pytest.mark.torch]

INTENDED_USE = "This is an example, not to be used for diagnostic purposes"
DISCLAIMER = "Research use only; the authors host none of the LUNA16 data."
SPACING = [0.703125, 0.703125, 1.25]


def _inference_json(*, pixdim: list[float], score_thresh: float = 0.02) -> dict[str, object]:
    """Return the parts of the bundle's configs/inference.json that carry its numbers."""
    return {
        "infer_patch_size": [512, 512, 192],
        "anchor_generator": {
            "_target_": "monai.apps.detection.utils.anchor_utils.AnchorGeneratorWithAnchorShape",
            "feature_map_scales": [1, 2, 4],
            "base_anchor_shapes": [[6, 8, 4], [8, 6, 5], [10, 10, 6]],
        },
        "backbone": "$monai.networks.nets.resnet.resnet50(spatial_dims=3,n_input_channels=1,"
        "conv1_t_stride=[2,2,1],conv1_t_size=[7,7,7])",
        "feature_extractor": "$monai.apps.detection.networks.retinanet_network."
        "resnet_fpn_feature_extractor(@backbone,3,False,[1,2],None)",
        "network_def": {
            "_target_": "RetinaNet",
            "spatial_dims": 3,
            "num_classes": 1,
            "num_anchors": 3,
            "feature_extractor": "@feature_extractor",
            "size_divisible": [16, 16, 8],
        },
        "detector_ops": [
            "$@detector.set_target_keys(box_key='box', label_key='label')",
            f"$@detector.set_box_selector_parameters(score_thresh={score_thresh},"
            "topk_candidates_per_level=1000,nms_thresh=0.22,detections_per_img=300)",
            "$@detector.set_sliding_window_inferer(roi_size=@infer_patch_size,overlap=0.25,"
            "sw_batch_size=1,mode='constant',device='cpu')",
        ],
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": pixdim},
                {
                    "_target_": "ScaleIntensityRanged",
                    "keys": "image",
                    "a_min": -1024.0,
                    "a_max": 300.0,
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                },
            ],
        },
    }


def _bundle(
    root: Path,
    state: object | None,
    *,
    pixdim: list[float] = SPACING,
    score_thresh: float = 0.02,
) -> Path:
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    metadata = {
        "version": "0.6.9",
        "task": "CT lung nodule detection",
        "description": "A pre-trained model for volumetric (3D) detection of the lung lesion",
        "data_source": "https://luna16.grand-challenge.org/Home/",
        "intended_use": INTENDED_USE,
        "disclaimer": DISCLAIMER,
        "references": ["Lin, Tsung-Yi, et al. 'Focal loss for dense object detection. ICCV 2017"],
        "eval_metrics": {"froc": 0.9},
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata))
    inference = _inference_json(pixdim=pixdim, score_thresh=score_thresh)
    (root / "configs" / "inference.json").write_text(json.dumps(inference))
    if state is not None:
        torch.save(state, root / "models" / "model.pt")
    return root


@pytest.fixture(scope="module")
def bundle_state() -> dict[str, torch.Tensor]:
    """Return random weights of the bundle's exact network, logits spread so boxes pass."""
    net = perturbed_network(NetworkSpec(), DetectionSpec(), seed=11, bias=2.0, logit_scale=4.0)
    state: dict[str, torch.Tensor] = net.state_dict()
    assert len(state) == 190
    assert sum(p.numel() for p in net.parameters()) == 20_902_741
    return state


@pytest.mark.slow
def test_imported_bundle_has_a_valid_card_and_serves_monai_detector_boxes(
    bundle_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path / "lung_nodule_ct_detection", bundle_state)
    out = tmp_path / "models" / "bundle"
    proc = subprocess.run(
        [sys.executable, "-m", "triage.cli", "import-bundle", str(bundle), "--model-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    card = load_card(out)
    assert card.verify_weights(out) == out / "model.onnx"
    assert card.weights.sha256 == sha256_file(out / "model.onnx")
    assert card.weights.source == (
        "MONAI bundle lung_nodule_ct_detection 0.6.9 imported by triage import-bundle"
    )
    assert card.version == "0.6.9"
    assert card.network == NetworkSpec()
    assert card.detection == DetectionSpec()
    assert card.preprocess.target_spacing_mm == (0.703125, 0.703125, 1.25)
    assert card.preprocess.axcodes == "RAS"
    assert "NOT FOR DIAGNOSTIC USE" in card.intended_use
    assert INTENDED_USE in card.intended_use
    assert DISCLAIMER in card.intended_use
    assert "configs/inference.json: Spacingd.pixdim" in card.training_data["configs_cross_checked"]
    assert [e.version for e in card.changelog] == ["0.6.9"]
    assert card.training_data["bundle_weights_sha256"] == sha256_file(bundle / "models/model.pt")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.yaml"]

    # ONNX Runtime + numpy post-processing == MONAI's RetinaNetDetector on the same weights
    det = card.detection.model_copy(update={"score_thresh": 0.05})
    network = build_network(card.network, det)
    network.load_state_dict(bundle_state)
    reference = build_detector(card.network, det, network.eval()).eval()
    x = torch.rand(1, 1, 64, 64, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = reference(x, use_inferer=False)[0]
    runtime = make_runtime("onnx", card, out, RuntimeOptions())
    ours = detect(x[0, 0].numpy(), head_function(runtime, card), det, use_inferer=False)
    ref_boxes = ref[reference.target_box_key].numpy()
    ref_scores = ref[reference.pred_score_key].numpy()
    assert len(ref_boxes) >= 20
    assert ours.boxes.shape == ref_boxes.shape
    _assert_same_detections(ours.boxes, ours.scores, ref_boxes, ref_scores)


def test_a_renamed_state_dict_key_is_refused_before_anything_is_written(
    bundle_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(bundle_state)
    state["classification_head.logits.weight"] = state.pop("classification_head.cls_logits.weight")
    bundle = _bundle(tmp_path / "bundle", {"model": state})
    out = tmp_path / "out"
    with pytest.raises(
        ValueError,
        match=r"1 missing keys \(first: classification_head\.cls_logits\.weight\); "
        r"1 unexpected keys \(first: classification_head\.logits\.weight\)",
    ):
        import_bundle(bundle, out)
    assert not out.exists()


def test_a_state_dict_tensor_of_the_wrong_shape_is_refused(
    bundle_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(bundle_state)
    state["regression_head.bbox_reg.bias"] = torch.zeros(17)
    bundle = _bundle(tmp_path / "bundle", {"network": state})
    with pytest.raises(
        ValueError,
        match=r"1 shape mismatches \(first: regression_head\.bbox_reg\.bias ours \(18,\) "
        r"bundle \(17,\)\)",
    ):
        import_bundle(bundle, tmp_path / "out")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"pixdim": [0.8, 0.8, 1.25]},
            r"configs/inference\.json field Spacingd\.pixdim must be \[0\.703125, 0\.703125, "
            r"1\.25\] .*got \[0\.8, 0\.8, 1\.25\]",
        ),
        (
            {"score_thresh": 0.05},
            r"field set_box_selector_parameters\.score_thresh must be 0\.02 .*got 0\.05",
        ),
    ],
    ids=["spacing", "score_thresh"],
)
def test_a_config_that_differs_from_the_bundle_is_refused(
    change: dict[str, object], message: str, tmp_path: Path
) -> None:
    bundle = _bundle(tmp_path / "bundle", None, **change)
    with pytest.raises(ValueError, match=message):
        import_bundle(bundle, tmp_path / "out")


class _NotATensor:
    pass


def test_weights_load_only_tensors_bare_or_wrapped(tmp_path: Path) -> None:
    tensors = {"a.weight": torch.ones(2)}
    for name, payload in [("bare", tensors), ("model", {"model": tensors, "epoch": 3})]:
        torch.save(payload, tmp_path / f"{name}.pt")
        assert torch.equal(load_state_dict(tmp_path / f"{name}.pt")["a.weight"], torch.ones(2))
    torch.save({"a.weight": _NotATensor()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"must hold only tensors \(loaded with weights_only"):
        load_state_dict(tmp_path / "code.pt")
    with pytest.raises(FileNotFoundError, match=r"must contain models/model\.pt"):
        load_state_dict(tmp_path / "missing.pt")
