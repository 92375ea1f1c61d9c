"""The numpy post-processing gives MONAI RetinaNetDetector's boxes and scores for the same maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.model_factories import DET_2D, TINY_2D, TINY_3D, perturbed_network
from triage.inference.detector import detect
from triage.inference.networks import HeadOutputs, build_detector, build_network
from triage.inference.spec import DetectionSpec, NetworkSpec

pytestmark = pytest.mark.torch


def _compare(
    spec: NetworkSpec, det: DetectionSpec, shape: tuple[int, ...], *, seed: int, at_least: int = 10
) -> int:
    net = perturbed_network(spec, det, seed=seed)
    reference = build_detector(spec, det, net).eval()
    x = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(seed))
    use = bool(np.prod(shape) > np.prod(det.roi_size))
    with torch.no_grad():
        ref = reference(x, use_inferer=use)[0]
    wrapper = HeadOutputs(net).eval()

    def head(a: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [o.numpy() for o in wrapper(torch.from_numpy(a))]

    ours = detect(x[0, 0].numpy(), head, det)
    ref_boxes = ref[reference.target_box_key].numpy()
    ref_scores = ref[reference.pred_score_key].numpy()
    assert ours.boxes.shape == ref_boxes.shape
    assert len(ref_boxes) >= at_least, "the test must exercise real selections"
    np.testing.assert_allclose(
        ours.boxes, ref_boxes, atol=1e-3
    )  # voxels (<= 1e-3 mm at <= 1 mm voxels)
    np.testing.assert_allclose(ours.scores, ref_scores, atol=1e-4)
    np.testing.assert_array_equal(ours.labels, ref[reference.target_label_key].numpy())
    return len(ref_boxes)


def test_numpy_path_matches_monai_detector_on_a_whole_3d_image() -> None:
    det = DetectionSpec(roi_size=(64, 64, 32), score_thresh=0.005)
    _compare(TINY_3D, det, (48, 40, 24), seed=1)


def test_numpy_path_matches_monai_detector_with_sliding_windows_and_padding() -> None:
    det = DetectionSpec(roi_size=(32, 32, 16), overlap=0.25, score_thresh=0.005)
    _compare(TINY_3D, det, (50, 45, 30), seed=2)


def test_numpy_path_matches_monai_detector_in_2d() -> None:
    det = DET_2D.model_copy(update={"score_thresh": 0.005, "roi_size": (96, 96)})
    _compare(TINY_2D, det, (150, 130), seed=3)


def test_nms_threshold_and_detection_cap_are_honoured_like_monai() -> None:
    det = DetectionSpec(
        roi_size=(64, 64, 32), score_thresh=0.005, nms_thresh=0.05, detections_per_img=7
    )
    assert _compare(TINY_3D, det, (40, 40, 24), seed=4, at_least=7) == 7


def test_bundle_network_has_the_bundle_parameter_count_and_state_keys() -> None:
    net = build_network(NetworkSpec(), DetectionSpec())
    state = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 20_902_741
    assert len(state) == 190
    assert "feature_extractor.body.conv1.weight" in state
    assert tuple(state["classification_head.cls_logits.weight"].shape) == (3, 256, 3, 3, 3)


def test_decoding_only_the_selected_anchors_gives_the_boxes_of_decoding_all() -> None:
    """``postprocess`` decodes after top-k selection; decoding every anchor first (MONAI's order)
    must give the same boxes bit for bit."""
    from triage.inference.detection import (  # noqa: PLC0415 - the internals under test
        decode_boxes,
        grid_anchors,
        postprocess,
        reshape_map,
        select_boxes,
    )

    det = DetectionSpec(roi_size=(64, 64, 32), score_thresh=0.005)
    wrapper = HeadOutputs(perturbed_network(TINY_3D, det, seed=5)).eval()
    x = torch.rand(1, 1, 48, 48, 24, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        maps = [o.numpy() for o in wrapper(x)]
    n = len(maps) // 2
    anchors = grid_anchors(det, x.shape[2:], [m.shape[2:] for m in maps[:n]])
    logits = [reshape_map(m, det.num_anchors)[0] for m in maps[:n]]
    boxes = [
        decode_boxes(reshape_map(m, det.num_anchors)[0], a, det.box_coder_weights)
        for m, a in zip(maps[n:], anchors, strict=True)
    ]
    every = select_boxes([b.__getitem__ for b in boxes], logits, x.shape[2:], det)
    lazy = postprocess(maps, x.shape[2:], x.shape[2:], det)
    assert len(every.scores) >= 10
    np.testing.assert_array_equal(lazy.boxes, every.boxes)
    np.testing.assert_array_equal(lazy.scores, every.scores)
