"""Flip test-time augmentation: maps of a flipped pass land on the right anchors, signs included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.model_factories import DET_2D, TINY_2D, perturbed_network
from triage.inference.detection import Detections
from triage.inference.detector import detect
from triage.inference.networks import HeadOutputs
from triage.inference.spec import DetectionSpec

STRIDES = (4, 8, 16)


def _pool(image: np.ndarray, stride: int) -> np.ndarray:
    h, w = image.shape[0] // stride, image.shape[1] // stride
    return image[: h * stride, : w * stride].reshape(h, stride, w, stride).mean(axis=(1, 3))


def _equivariant_head(det: DetectionSpec):  # type: ignore[no-untyped-def]
    """A 'network' that commutes with flips: logits from pooled intensity, x/y offsets from its
    gradient (which changes sign under a flip), log-size codes from its curvature (which does not).
    """

    def head(batch: np.ndarray) -> list[np.ndarray]:
        image = batch[0, 0]
        cls, box = [], []
        for stride in STRIDES:
            pooled = _pool(image, stride)
            gy, gx = np.gradient(pooled)
            curv = np.gradient(gy, axis=0) + np.gradient(gx, axis=1)
            cls.append(np.stack([8 * pooled - 5 + 0.3 * a for a in range(det.num_anchors)])[None])
            codes = [4 * gy, 4 * gx, 0.5 * curv, -0.5 * curv]
            per_anchor = [np.stack(codes) * (1 + 0.1 * a) for a in range(det.num_anchors)]
            box.append(np.concatenate(per_anchor)[None])
        return [m.astype(np.float32) for m in cls + box]

    return head


def _blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(10, shape[0] - 10), rng.uniform(10, shape[1] - 10)
        r = rng.uniform(3, 9)
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)).astype(np.float32)
    return image


def _same(a: Detections, b: Detections, *, atol: float = 1e-3) -> None:
    assert a.boxes.shape == b.boxes.shape
    order_a, order_b = np.lexsort(a.boxes.T), np.lexsort(b.boxes.T)
    np.testing.assert_allclose(a.boxes[order_a], b.boxes[order_b], atol=atol)
    np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], atol=1e-5)


def _mirror(dets: Detections, size: tuple[int, int], axes: tuple[int, ...]) -> Detections:
    boxes = dets.boxes.copy()
    for a in axes:
        boxes[:, a], boxes[:, a + 2] = size[a] - dets.boxes[:, a + 2], size[a] - dets.boxes[:, a]
    return Detections(boxes, dets.scores, dets.labels)


@pytest.mark.parametrize("shape", [(96, 112), (90, 101)])  # divisible, and padded
def test_flip_passes_of_a_flip_equivariant_head_change_nothing(shape: tuple[int, int]) -> None:
    """Offsets must be negated on flipped axes: unflipped, they would average to zero and move
    every box; mapped back to the wrong anchors, the logits would blur."""
    det = DET_2D.model_copy(update={"score_thresh": 0.05, "roi_size": (512, 512)})
    image, head = _blobs(shape, seed=1), _equivariant_head(det)
    plain = detect(image, head, det)
    assert len(plain.scores) >= 10, "the test must exercise real selections"
    assert np.abs(plain.boxes - np.round(plain.boxes)).max() > 0.05, "offsets must move boxes"
    tta = det.model_copy(update={"tta_flip_axes": ((0,), (1,), (0, 1))})
    _same(detect(image, head, tta), plain)


def test_flip_tta_of_a_real_network_is_mirror_symmetric() -> None:
    """{identity, flip i} is closed under flip i: the detections of a mirrored image are the
    mirrored detections of the image, for any network (here a perturbed, untrained one)."""
    det = DET_2D.model_copy(
        update={"score_thresh": 0.005, "roi_size": (512, 512), "tta_flip_axes": ((0,),)}
    )
    net = HeadOutputs(perturbed_network(TINY_2D, det, seed=7)).eval()

    def head(a: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [o.numpy() for o in net(torch.from_numpy(np.ascontiguousarray(a)))]

    image = np.random.default_rng(3).random((128, 96), dtype=np.float32)
    ours = detect(image, head, det)
    mirrored = detect(np.ascontiguousarray(image[::-1]), head, det)
    assert len(ours.scores) >= 10
    _same(_mirror(mirrored, image.shape, (0,)), ours)
    plain = detect(image, head, det.model_copy(update={"tta_flip_axes": ()}))
    assert not np.allclose(np.sort(plain.scores)[-10:], np.sort(ours.scores)[-10:], atol=1e-4)


@pytest.mark.parametrize("axes", [((),), ((2,),), ((0, 0),), ((0,), (0,)), ((-1,),)])
def test_invalid_flip_axes_are_refused_with_the_offending_value(
    axes: tuple[tuple[int, ...], ...],
) -> None:
    with pytest.raises(ValidationError, match="tta_flip_axes"):
        DET_2D.model_copy(update={"roi_size": (512, 512)}).model_validate(
            {**DET_2D.model_dump(), "tta_flip_axes": axes}
        )


def test_flip_axes_are_accepted_per_spatial_dimension() -> None:
    spec = DetectionSpec(tta_flip_axes=((0,), (1, 2)))
    assert spec.tta_flip_axes == ((0,), (1, 2))
