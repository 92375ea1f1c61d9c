"""Hard-negative mining: where a trained model fires on training images that hold nothing there.

Random negative crops seldom land on the few structures a detector confuses with a target (vessel
crossings, rib overlaps, the cortex of a healthy bone), so a model can finish training with
confident false positives on exactly those. Mining runs an exported model once over the training
pool, through the serving detector, and keeps the centres of confident detections that lie in no
reference box. Training then centres ``hard_negative_fraction`` of its crops on them
(``crops.random_crop(hard=True)``) — the image-level counterpart of the anchor-level hard-negative
sampler MONAI's RetinaNet already applies inside each crop.

    python -m training.detection.hard_negatives --config configs/training/<m>/<exp>.yaml \
        --model-dir models/<m> --out work/runs/<run>/hard_negatives.npz

and set ``hard_negatives: work/runs/<run>/hard_negatives.npz`` in the experiment.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.detection import hard_positives
from training.detection.config import load_config
from training.detection.crops import Sample
from triage.inference.detection import Detections
from triage.inference.detector import detect
from triage.inference.spec import DetectionSpec

F32 = npt.NDArray[np.float32]
HeadFn = Callable[[np.ndarray], Sequence[np.ndarray]]


def false_positive_centres(
    boxes: F32, scores: F32, reference: F32, *, min_score: float, max_count: int
) -> F32:
    """Return centres (K, dims) of detections scoring >= ``min_score`` outside every reference box.

    A detection whose centre lies inside a reference box (grown by half its size on each side, so
    near-misses on a real target are not taught as background) is not a false positive. At most
    ``max_count`` centres are kept, highest scores first.
    """
    dims = boxes.shape[1] // 2 if boxes.size else reference.shape[1] // 2 if reference.size else 0
    if len(boxes) == 0:
        return np.zeros((0, dims), np.float32)
    centres = (boxes[:, :dims] + boxes[:, dims:]) / 2
    keep = scores >= min_score
    if len(reference):
        size = reference[:, dims:] - reference[:, :dims]
        lo, hi = reference[:, :dims] - size / 2, reference[:, dims:] + size / 2
        inside = np.all((centres[:, None] >= lo[None]) & (centres[:, None] <= hi[None]), axis=2)
        keep &= ~inside.any(axis=1)
    order = np.argsort(-scores[keep], kind="stable")[:max_count]
    return np.asarray(centres[keep][order], dtype=np.float32)


def detect_pool(
    pool: Sequence[Sample],
    head: HeadFn,
    detection: DetectionSpec,
    *,
    on_image: Callable[[int], None] | None = None,
) -> list[Detections]:
    """Run the model once over every pool image (network voxels): the one pass mining needs."""
    out: list[Detections] = []
    for n, sample in enumerate(pool):
        out.append(detect(sample.image.astype(np.float32), head, detection))
        if on_image is not None:
            on_image(n)
    return out


def mine(
    pool: Sequence[Sample],
    head: HeadFn,
    detection: DetectionSpec,
    *,
    min_score: float = 0.3,
    max_per_image: int = 16,
    on_image: Callable[[int], None] | None = None,
) -> list[F32]:
    """Return the false-positive centres of the model on every pool image (network voxels)."""
    return centres_of(
        pool,
        detect_pool(pool, head, detection, on_image=on_image),
        min_score=min_score,
        max_per_image=max_per_image,
    )


def centres_of(
    pool: Sequence[Sample], dets: Sequence[Detections], *, min_score: float, max_per_image: int
) -> list[F32]:
    """Return the false-positive centres of already-run detections, one array per pool image."""
    return [
        false_positive_centres(
            d.boxes, d.scores, sample.boxes, min_score=min_score, max_count=max_per_image
        )
        for sample, d in zip(pool, dets, strict=True)
    ]


def save(path: Path, centres: Sequence[F32], *, meta: dict[str, object]) -> None:
    """Write the centres (one array per pool image) and what produced them, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, npt.NDArray[np.generic]] = {f"s{n}": c for n, c in enumerate(centres)}
    arrays["meta"] = np.array(json.dumps({**meta, "pool_size": len(centres)}))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    tmp.replace(path)


def load(path: Path, pool_size: int) -> list[F32]:
    """Read mined centres for a pool of ``pool_size`` images.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file was mined on a different pool (another size): re-run the mining.
    """
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        if int(meta["pool_size"]) != pool_size:
            raise ValueError(
                f"hard_negatives {path} was mined on {meta['pool_size']} images but the training "
                f"pool has {pool_size}: mine again with the same data section"
            )
        return [np.asarray(data[f"s{n}"], dtype=np.float32) for n in range(pool_size)]


def attach(pool: Sequence[Sample], centres: Sequence[F32]) -> list[Sample]:
    """Return the pool with each sample's mined centres attached."""
    return [replace(s, hard=c) for s, c in zip(pool, centres, strict=True)]


def main() -> None:
    """Mine an exported model's false positives on a config's training pool."""
    from training.detection.sources import build_samples  # noqa: PLC0415 - heavy, only here
    from triage.inference.card import load_card  # noqa: PLC0415
    from triage.inference.runtime import RuntimeOptions, head_function, make_runtime  # noqa: PLC0415

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--min-score", type=float, default=0.3)
    p.add_argument("--max-per-image", type=int, default=16)
    p.add_argument(
        "--missed-out",
        type=Path,
        help="also write the reference boxes no detection >= --missed-below hits (hard positives)",
    )
    p.add_argument("--missed-below", type=float, default=0.5)
    args = p.parse_args()
    cfg = load_config(args.config)
    card = load_card(args.model_dir)
    if card.task != cfg.task:
        p.error(f"--model-dir must hold a {cfg.task} model, got a {card.task} one")
    head = head_function(make_runtime("onnx", card, args.model_dir, RuntimeOptions()), card)
    pool = build_samples(cfg)
    dets = detect_pool(pool, head, card.detection)
    centres = centres_of(pool, dets, min_score=args.min_score, max_per_image=args.max_per_image)
    meta: dict[str, object] = {
        "model": card.name,
        "version": card.version,
        "sha256": card.weights.sha256,
        "config": str(args.config),
    }
    save(args.out, centres, meta={**meta, "min_score": args.min_score})
    n = sum(len(c) for c in centres)
    print(f"{n} false-positive centres on {len(pool)} images -> {args.out}")  # noqa: T201
    if args.missed_out is not None:
        missed = [
            hard_positives.missed_boxes(d.boxes, d.scores, s.boxes, below=args.missed_below)
            for s, d in zip(pool, dets, strict=True)
        ]
        hard_positives.save(args.missed_out, missed, meta={**meta, "below": args.missed_below})
        n_missed, n_boxes = sum(len(m) for m in missed), sum(len(s.boxes) for s in pool)
        print(f"{n_missed} of {n_boxes} reference boxes missed -> {args.missed_out}")  # noqa: T201


if __name__ == "__main__":
    main()
