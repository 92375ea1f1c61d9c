"""Second-stage false-positive reduction: re-score each candidate from the patch around it.

The detector proposes candidates; a patch classifier (the card's ``rescoring`` block) looks at the
neighbourhood of each one and the two scores are combined (LUNA16's candidate-detection plus
false-positive-reduction design). Pure numpy apart from the classifier callable, which the runtime
supplies, so training cuts its patches with the very same :func:`extract_patches`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from triage.core.errors import ModelUnavailable
from triage.inference.card import ModelCard, RescoringSpec
from triage.inference.detection import Detections

F32 = npt.NDArray[np.float32]
PatchClassifier = Callable[[F32], F32]
"""``(N, 1, *patch_size)`` patches in the network's 0..1 input -> ``(N,)`` logits."""

BATCH = 64  # patches per classifier call: bounds memory on 300-candidate CTs


def patch_origins(centres_vox: npt.ArrayLike, patch_size: Sequence[int]) -> npt.NDArray[np.int64]:
    """Return each patch's first voxel: the rounded centre minus half the patch (floor).

    >>> patch_origins([[10.4, 3.6]], (4, 5)).tolist()
    [[8, 2]]
    """
    centres = np.asarray(centres_vox, dtype=np.float64).reshape(-1, len(patch_size))
    return np.round(centres).astype(np.int64) - np.asarray(patch_size, dtype=np.int64) // 2


def extract_patches(image: F32, centres_vox: npt.ArrayLike, patch_size: Sequence[int]) -> F32:
    """Cut ``patch_size`` patches centred on ``centres_vox`` (network voxels, (i, j[, k]) order).

    Voxels outside the image are 0 (air on a CT window, the darkest value on a radiograph), so a
    candidate at the border gets a patch of the same size. Returns ``(N, 1, *patch_size)``.
    """
    size = np.asarray(patch_size, dtype=np.int64)
    shape = np.asarray(image.shape, dtype=np.int64)
    origins = patch_origins(centres_vox, patch_size)
    out = np.zeros((len(origins), 1, *patch_size), dtype=np.float32)
    for n, lo in enumerate(origins):
        src_lo, src_hi = np.maximum(lo, 0), np.minimum(lo + size, shape)
        if np.any(src_hi <= src_lo):
            continue
        dst_lo = src_lo - lo
        dst = tuple(
            slice(int(a), int(a + b - c)) for a, b, c in zip(dst_lo, src_hi, src_lo, strict=True)
        )
        src = tuple(slice(int(a), int(b)) for a, b in zip(src_lo, src_hi, strict=True))
        out[n, 0][dst] = image[src]
    return out


def combine_scores(detection: F32, probability: F32, weight: float) -> F32:
    """Return ``detection ** (1 - weight) * probability ** weight`` (both in 0..1).

    Monotone in each score, so a candidate never drops below one that both stages rank lower.
    """
    det = np.clip(np.asarray(detection, dtype=np.float64), 0.0, 1.0)
    prob = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    return (det ** (1.0 - weight) * prob**weight).astype(np.float32)


def rescore(
    image: F32, detections: Detections, classify: PatchClassifier, spec: RescoringSpec
) -> Detections:
    """Re-score every detection with the patch classifier and re-sort, best first."""
    n = len(detections.scores)
    if n == 0:
        return detections
    dims = detections.boxes.shape[1] // 2
    centres = (detections.boxes[:, :dims] + detections.boxes[:, dims:]) / 2.0
    logits = np.concatenate(
        [
            np.asarray(
                classify(extract_patches(image, centres[i : i + BATCH], spec.patch_size)),
                dtype=np.float64,
            ).reshape(-1)
            for i in range(0, n, BATCH)
        ]
    )
    probability = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    scores = combine_scores(detections.scores, probability.astype(np.float32), spec.weight)
    order = np.argsort(-scores, kind="stable")
    return Detections(detections.boxes[order], scores[order], detections.labels[order])


def apply_rescoring(
    image: F32, detections: Detections, card: ModelCard, classify: PatchClassifier | None
) -> Detections:
    """Apply the card's rescoring stage, if it declares one.

    Raises:
        ModelUnavailable: the card declares a rescoring stage but no classifier was loaded for it
            (its scores and operating point assume the stage; skipping it would change them).
    """
    if card.rescoring is None:
        return detections
    if classify is None:
        raise ModelUnavailable(
            f"model {card.name!r} declares a rescoring stage ({card.rescoring.file}) but none was "
            "loaded; load it with triage.inference.runtime.make_patch_classifier"
        )
    return rescore(image, detections, classify, card.rescoring)
