"""Hard-positive mining: the training targets a trained model still misses.

A detector that has learnt the common, easy targets keeps drawing most of its positive crops from
them, and the rare, subtle ones (a rib fracture among crossing ribs, a 4 mm ground-glass nodule)
stay a small share of the gradient however long it trains. Mining runs an exported model once over
the training pool (in the same pass as ``hard_negatives``) and records, per image, the reference
boxes that no detection scoring ``>= below`` hits (LUNA16-style: a detection hits a box when its
centre lies inside it). Training then draws ``hard_positive_fraction`` of its positive crops
centred on one of those boxes (``crops.random_crop(box_index=...)``) — online hard example mining
at the level of whole targets. The labels are unchanged: every box in every crop is still a target.

    python -m training.detection.hard_negatives --config <exp>.yaml --model-dir models/<m> \
        --out work/runs/<run>/hn.npz --missed-out work/runs/<run>/hp.npz

and set ``hard_positives: work/runs/<run>/hp.npz`` in the experiment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.detection.crops import Sample

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def missed_boxes(boxes: F32, scores: F32, reference: F32, *, below: float) -> I64:
    """Return the indices of ``reference`` boxes that no detection scoring ``>= below`` hits.

    A detection hits a reference box when its centre lies inside that box (edges included).
    """
    n_ref = len(reference)
    if n_ref == 0:
        return np.zeros(0, np.int64)
    dims = reference.shape[1] // 2
    confident = boxes[scores >= below] if len(boxes) else boxes.reshape(0, 2 * dims)
    if len(confident) == 0:
        return np.arange(n_ref, dtype=np.int64)
    centres = (confident[:, :dims] + confident[:, dims:]) / 2
    lo, hi = reference[:, :dims], reference[:, dims:]
    inside = np.all((centres[:, None] >= lo[None]) & (centres[:, None] <= hi[None]), axis=2)
    return np.nonzero(~inside.any(axis=0))[0].astype(np.int64)


def save(path: Path, missed: Sequence[I64], *, meta: dict[str, object]) -> None:
    """Write the missed-box indices (one array per pool image) and their provenance, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, npt.NDArray[np.generic]] = {f"s{n}": m for n, m in enumerate(missed)}
    n_boxes = int(sum(len(m) for m in missed))
    arrays["meta"] = np.array(json.dumps({**meta, "pool_size": len(missed), "missed": n_boxes}))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    tmp.replace(path)


def load(path: Path, pool: Sequence[Sample]) -> list[I64]:
    """Read missed-box indices mined on ``pool``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file was mined on a different pool (another size, or an index past an
            image's boxes): mine again with the same data section.
    """
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        if int(meta["pool_size"]) != len(pool):
            raise ValueError(
                f"hard_positives {path} was mined on {meta['pool_size']} images but the training "
                f"pool has {len(pool)}: mine again with the same data section"
            )
        missed = [np.asarray(data[f"s{n}"], dtype=np.int64) for n in range(len(pool))]
    for n, (m, sample) in enumerate(zip(missed, pool, strict=True)):
        if len(m) and int(m.max()) >= len(sample.boxes):
            raise ValueError(
                f"hard_positives {path}: image {n} names box {int(m.max())} but has "
                f"{len(sample.boxes)}: it was mined on another pool; mine again"
            )
    return missed


def attach(pool: Sequence[Sample], missed: Sequence[I64]) -> list[Sample]:
    """Return the pool with each sample's missed-box indices attached."""
    return [replace(s, missed=m) for s, m in zip(pool, missed, strict=True)]
